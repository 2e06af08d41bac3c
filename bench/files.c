/*
 * Checkpoint save and load of a ~100 MB model through the C API, against
 * the disk's sequential write and read bandwidth measured in the same run on
 * the same directory (DESIGN.md: ratios, not bare times). Not a test.
 *
 *   write baseline: write(2) of the same byte count to a new file, fsync,
 *                   close (what the atomic save must do at least once)
 *   read baseline:  read(2) of that file after its pages were dropped from
 *                   the page cache (posix_fadvise DONTNEED on the fsynced file)
 *   checkpoint_save_100MB: parml_trainer_save_checkpoint (temp file, write,
 *                   fsync, rename, fsync of the directory)
 *   checkpoint_load_100MB: parml_trainer_load_checkpoint after dropping the
 *                   checkpoint's pages the same way (read, CRC, decode, copy)
 *
 * Prints one JSON object per figure (tools/bench_report.py merges them).
 * usage: bench_files [DIR]   (default: the current directory)
 */
#define _POSIX_C_SOURCE 200809L
#include <parml.h>

#include "bench_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK(call)                                                                                 \
    do {                                                                                            \
        parml_status s_ = (call);                                                                   \
        if (s_ != PARML_OK) {                                                                       \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, parml_last_error());       \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)
#define DIE_IF(cond, what)  \
    do {                    \
        if (cond) {         \
            perror(what);   \
            exit(1);        \
        }                   \
    } while (0)

/* Interleaved repetitions: the disk and page cache drift over seconds. */
enum { REPS = 5, FEATURES = 5000 };


/* Drops a file's (clean, fsynced) pages from the page cache: the next read comes from the disk. */
static void drop_cache(const char *path) {
    int fd = open(path, O_RDONLY);
    DIE_IF(fd < 0, path);
    DIE_IF(fdatasync(fd) != 0, "fdatasync");
    DIE_IF(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0, "posix_fadvise");
    close(fd);
}

static double write_file(const char *path, const char *buf, size_t n) {
    double t0 = now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    DIE_IF(fd < 0, path);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, n - off);
        DIE_IF(w <= 0, "write");
        off += (size_t)w;
    }
    DIE_IF(fsync(fd) != 0, "fsync");
    close(fd);
    return now() - t0;
}

static double read_file(const char *path, char *buf, size_t n) {
    drop_cache(path);
    double t0 = now();
    int fd = open(path, O_RDONLY);
    DIE_IF(fd < 0, path);
    for (size_t off = 0; off < n;) {
        ssize_t r = read(fd, buf + off, n - off);
        DIE_IF(r <= 0, "read");
        off += (size_t)r;
    }
    close(fd);
    return now() - t0;
}

static void report(const char *name, double gbs, const char *baseline, double base_gbs) {
    printf("{\"name\": \"%s\", \"value\": %.3f, \"unit\": \"GB/s\", \"baseline\": \"%s\", \"baseline_value\": %.3f, "
           "\"ratio\": %.3f}\n",
           name, gbs, baseline, base_gbs, gbs / base_gbs);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".";
    char ckpt[1024], raw[1024];
    snprintf(ckpt, sizeof ckpt, "%s/bench_checkpoint.pb", dir);
    snprintf(raw, sizeof raw, "%s/bench_raw.bin", dir);

    /* Linear 5000 -> 5000: 25,005,000 parameters, 100.02 MB. Plain SGD keeps
       no optimizer state, so the checkpoint is the model (plus ~100 bytes). */
    parml_model m = NULL;
    CHECK(parml_model_create(&m));
    CHECK(parml_model_add_linear(m, FEATURES, FEATURES, 1));
    CHECK(parml_model_init(m, 1));
    parml_trainer t = NULL;
    CHECK(parml_trainer_create(m, PARML_LOSS_MSE, NULL, NULL, &t));
    CHECK(parml_trainer_save_checkpoint(t, ckpt));
    struct stat st;
    DIE_IF(stat(ckpt, &st) != 0, ckpt);
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n);
    DIE_IF(!buf, "malloc");
    memset(buf, 0x5A, n);

    double save[REPS], load[REPS], wr[REPS], rd[REPS];
    for (int r = 0; r < REPS; r++) {
        wr[r] = write_file(raw, buf, n);
        double t0 = now();
        CHECK(parml_trainer_save_checkpoint(t, ckpt));
        save[r] = now() - t0;
        rd[r] = read_file(raw, buf, n);
        drop_cache(ckpt);
        t0 = now();
        CHECK(parml_trainer_load_checkpoint(t, ckpt));
        load[r] = now() - t0;
    }
    double gb = (double)n / 1e9;
    fprintf(stderr, "checkpoint of %zu bytes in %s; medians of %d: save %.3f s, write+fsync %.3f s, "
            "load %.3f s, cold read %.3f s\n", n, dir, REPS, median(save, REPS), median(wr, REPS),
            median(load, REPS), median(rd, REPS));
    report("checkpoint_save_100MB", gb / median(save, REPS), "write+fsync of the same bytes, same dir, same run",
           gb / median(wr, REPS));
    report("checkpoint_load_100MB", gb / median(load, REPS), "read of the same bytes from disk (page cache dropped), same run",
           gb / median(rd, REPS));
    unlink(ckpt);
    unlink(raw);
    free(buf);
    parml_trainer_free(t);
    parml_model_free(m);
    return 0;
}
