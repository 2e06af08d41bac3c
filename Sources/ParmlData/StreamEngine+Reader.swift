#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

extension StreamEngine {
    /// Reads shard rows with pread: one open shard, a chunk of rows read at
    /// a time, the chunk's pages dropped from the page cache once read.
    struct ChunkReader {
        let engine: StreamEngine
        var fd: Int32 = -1
        var shard = -1
        var chunkFirst = 0
        var chunkEnd = 0

        init(engine: StreamEngine) { self.engine = engine }

        mutating func close() {
            if fd >= 0 { _ = Glibc.close(fd) }
            fd = -1
            shard = -1
        }

        mutating func open(_ s: Int) throws {
            close()
            let info = engine.shards[s]
            let f = Glibc.open(info.inputsPath, O_RDONLY | O_CLOEXEC)
            guard f >= 0 else { throw ParmlError.io("\(info.inputsPath): cannot open: \(String(cString: strerror(errno)))") }
            var st = stat()
            guard fstat(f, &st) == 0, Int(st.st_size) == info.fileSize else {
                _ = Glibc.close(f)
                throw ParmlError.io("\(info.inputsPath): changed on disk since the dataset was opened (\(info.fileSize) bytes then)")
            }
            _ = posix_fadvise(f, 0, 0, POSIX_FADV_SEQUENTIAL)
            fd = f
            shard = s
            chunkFirst = 0
            chunkEnd = 0
        }

        /// Row `id` for a stream that reads rows in order within a shard.
        mutating func read(id: Int, into out: UnsafeMutableRawPointer) throws {
            let (s, row) = engine.locate(id)
            if s != shard { try open(s) }
            if row < chunkFirst || row >= chunkEnd {
                let rows = min(engine.chunkRows, engine.shards[s].rows - row)
                try pread(rows: rows, at: row, into: engine.chunk)
                chunkFirst = row
                chunkEnd = row + rows
            }
            out.copyMemory(from: engine.chunk + (row - chunkFirst) * engine.rowBytes, byteCount: engine.rowBytes)
        }

        /// One row on its own (the buffer's rows when a stream restarts mid-epoch).
        mutating func readAlone(id: Int, into out: UnsafeMutableRawPointer) throws {
            let (s, row) = engine.locate(id)
            if s != shard { try open(s) }
            try pread(rows: 1, at: row, into: out)
        }

        private func pread(rows: Int, at row: Int, into out: UnsafeMutableRawPointer) throws {
            let info = engine.shards[shard]
            let bytes = rows * engine.rowBytes
            let offset = info.inputsOffset + row * engine.rowBytes
            var done = 0
            while done < bytes {
                let n = Glibc.pread(fd, out + done, bytes - done, off_t(offset + done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    let why = n == 0 ? "the file ends early (truncated since the dataset was opened)" : String(cString: strerror(errno))
                    throw ParmlError.io("\(info.inputsPath): reading \(bytes) bytes at offset \(offset): \(why)")
                }
                done += n
            }
            // Read once: let the kernel drop these pages now rather than under pressure.
            _ = posix_fadvise(fd, off_t(offset), off_t(bytes), POSIX_FADV_DONTNEED)
        }
    }
}
