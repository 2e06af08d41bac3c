# parml: build, test, demo and benchmark. `make demo` and `make test` are the
# two commands a new user needs (README.md); both install missing Debian
# packages first (tools/install-deps.sh).

SWIFT   ?= swift
CC      ?= gcc
PYTHON  ?= python3
BUILD   := .build/release
ROOT    := $(CURDIR)
CSTRICT := -std=c11 -Wall -Wextra -Werror -pedantic
CLINK   := -Iinclude -L$(BUILD) -lparml -Wl,-rpath,$(ROOT)/$(BUILD)
FASHION ?= /usr/share/datasets/fashion-mnist

.PHONY: all deps lib build header check-header demo test test-swift test-c test-examples test-e2e bench clean
.PHONY: proto check-proto test-exchange
.PHONY: install uninstall abi check-abi test-install
.PHONY: demo-gpt demo-cnn check-sanitizers check-asan check-tsan fuzz fuzz-test fuzz-build fuzz-seeds

all: build

deps:
	@tools/install-deps.sh

# libparml.so (release). SwiftPM also writes the raw @c header here.
# Programs linked against it need it by its SONAME, libparml.so.<major>
# (docs/ABI.md), so the build directory gets that link too.
lib:
	$(SWIFT) build -c release --product parml
	@ln -sf libparml.so $(BUILD)/libparml.so.$(VERSION_MAJOR)

build: deps lib check-header

# Regenerate the public header from the @c functions (commit the result).
header: lib
	$(PYTHON) tools/gen_header.py .build/parml-swift.h tools/parml.h.in > .build/parml.h.new
	mv .build/parml.h.new include/parml.h

# The committed header must equal a fresh generation.
check-header: lib
	$(PYTHON) tools/gen_header.py .build/parml-swift.h tools/parml.h.in > .build/parml.h.fresh
	@diff -u include/parml.h .build/parml.h.fresh > .build/parml.h.diff || { \
	  cat .build/parml.h.diff; \
	  echo "include/parml.h differs from the @c functions: run 'make header' and commit it"; exit 1; }

# The docs name only API that exists: parml_* / PARML_* names in README.md,
# docs/, examples/ and the Python README against include/*.h, the Python
# README's Class.member names against bindings/python/parml, and an
# "Errors:" list on every status-returning function (tools/check_docs.py).
.PHONY: check-docs
check-docs:
	$(PYTHON) tools/check_docs.py

# protobuf-c code for the schemas in proto/, committed in Sources/CParmlProto
# (docs/file-format.md). `make proto` regenerates it; `make check-proto`
# (part of make test) fails when the committed code is stale.
PROTOS    := parml onnx_subset
PROTO_OUT := Sources/CParmlProto

proto:
	@for p in $(PROTOS); do \
	  protoc-c --c_out=$(PROTO_OUT) -Iproto proto/$$p.proto || exit 1; \
	  mv $(PROTO_OUT)/$$p.pb-c.h $(PROTO_OUT)/include/; \
	done

check-proto:
	@rm -rf .build/proto-fresh && mkdir -p .build/proto-fresh
	@for p in $(PROTOS); do \
	  protoc-c --c_out=.build/proto-fresh -Iproto proto/$$p.proto || exit 1; \
	  diff -u $(PROTO_OUT)/$$p.pb-c.c .build/proto-fresh/$$p.pb-c.c && \
	  diff -u $(PROTO_OUT)/include/$$p.pb-c.h .build/proto-fresh/$$p.pb-c.h || { \
	    echo "$(PROTO_OUT) is stale against proto/$$p.proto: run 'make proto' and commit it"; exit 1; }; \
	done
	@echo "PASS  generated protobuf-c code matches proto/"

build/train_fashion_mnist: examples/train_fashion_mnist.c examples/fashion_mnist.h examples/check.h include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -lz -o $@

build/bench: bench/bench.c bench/bench_util.h bench/bf16_bound.h build/libbf16_bound.so include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 -ISources/_CParmlDNNL/include $< $(CLINK) -Lbuild -lbf16_bound -Wl,-rpath,$(ROOT)/build -ldl -pthread -o $@

# The bf16 products-alone bound of an MLP step (bench/bf16_bound.h): parml's
# private oneDNN shim compiled in, with the compiler SwiftPM uses (its bf16
# rounding needs clang's intrinsics). bench.c links it (also for parml's
# float32 router, which its one-thread products bounds run through);
# bench/bf16_bound.py loads it with ctypes.
BF16_BOUND_SRC := bench/bf16_bound.c Sources/_CParmlDNNL/dnnl_loader.c Sources/_CParmlDNNL/dnnl_matmul.c Sources/_CParmlDNNL/dnnl_sgemm.c
build/libbf16_bound.so: $(BF16_BOUND_SRC) bench/bf16_bound.h bench/bench_util.h Sources/_CParmlDNNL/include/pml_dnnl.h Sources/_CParmlDNNL/include/pml_dnnl_matmul.h Sources/_CParmlDNNL/include/pml_dnnl_sgemm.h Sources/_CParmlDNNL/dnnl_api.h
	@mkdir -p build
	$(SAN_CC) -std=c11 -Wall -Wextra -Werror -O2 -fPIC -shared -ISources/_CParmlDNNL/include -ISources/_CParmlDNNL $(BF16_BOUND_SRC) -ldl -pthread -o $@

# The CPU's VDPBF16PS peak and clock, 1 and 2 threads (bench/bf16_peak.c).
build/bf16_peak: bench/bf16_peak.c bench/bench_util.h
	@mkdir -p build
	$(CC) -std=c11 -Wall -Wextra -Werror -O2 $< -pthread -o $@

# parml's vectorised tanh, sigmoid and GELU against the libm forms, same run
# (the private kernels compiled in, with the compiler SwiftPM uses).
build/bench_activations: bench/activations.c bench/bench_util.h Sources/_CParmlKernels/kernels.c Sources/_CParmlKernels/include/pml_kernels.h
	@mkdir -p build
	$(SAN_CC) -std=c11 -Wall -Wextra -Werror -O2 -ISources/_CParmlKernels/include bench/activations.c Sources/_CParmlKernels/kernels.c -lm -o $@

# Checkpoint save/load of a 100 MB model against the disk's bandwidth, same run.
build/bench_files: bench/files.c bench/bench_util.h include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -o $@

# Trains an MLP on Fashion-MNIST through the C API; ends with "test accuracy: 0.NNNN".
demo: build
	$(MAKE) --no-print-directory build/train_fashion_mnist
	./build/train_fashion_mnist $(FASHION)

# A character-level GPT on tinyshakespeare (data/tinyshakespeare) from C:
# GPT_ITERS iterations (nanoGPT's 2000 by default), train/val loss, a sample.
GPT_ITERS ?= 2000
demo-gpt: build
	$(MAKE) --no-print-directory build/train_gpt
	./build/train_gpt data/tinyshakespeare/input.txt $(GPT_ITERS) build/gpt_char.pb

# A small CNN on Fashion-MNIST from C (examples/train_cnn.c): CNN_EPOCHS epochs
# (15 by default), train loss and validation accuracy per epoch, the test
# accuracy, and the saved model loaded back (docs/cnn.md).
CNN_EPOCHS ?= 15
demo-cnn: build
	$(MAKE) --no-print-directory build/train_cnn
	./build/train_cnn $(FASHION) $(CNN_EPOCHS) 0 build/cnn_fmnist.pb

build/train_cnn: examples/train_cnn.c examples/fashion_mnist.h examples/check.h include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -lz -o $@

build/train_gpt: examples/train_gpt.c examples/check.h include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -o $@

test: build check-docs check-proto test-swift test-c test-exchange test-mpi test-examples test-e2e test-cli test-install check-sanitizers fuzz-test test-python test-wheel

# The parml command-line tool (cli/parml.c, docs/cli.md): a host of the library.
build/parml: cli/parml.c include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -o $@

build/make_files: tests/cli/make_files.c include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -lm -o $@

# Every subcommand on good and damaged files, exit codes checked.
.PHONY: test-cli
test-cli: lib
	$(MAKE) --no-print-directory build/parml build/make_files
	bash tests/cli/run_cli_tests.sh build/parml build/make_files

# Learns from real IDX files (MNIST beside the checkout, else Fashion-MNIST).
test-e2e: lib
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 tests/e2e/learns_mnist.c $(CLINK) -o build/learns_mnist
	./build/learns_mnist

# A model leaves the process that trained it: a second C process (through a
# pipe and a file), Python's protobuf package and protoc --decode read it.
test-exchange: lib
	bash tests/exchange/run_exchange.sh $(BUILD)

# The README's minimal program must build warning-free and learn.
test-examples: lib
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 examples/minimal.c $(CLINK) -o build/minimal
	./build/minimal
	$(MAKE) --no-print-directory build/train_fashion_mnist
	bash tests/examples/check_demo.sh build/train_fashion_mnist $(FASHION)
	$(MAKE) --no-print-directory build/train_gpt
	bash tests/examples/check_demo_gpt.sh build/train_gpt data/tinyshakespeare/input.txt
	$(MAKE) --no-print-directory build/train_cnn
	bash tests/examples/check_demo_cnn.sh build/train_cnn $(FASHION)

# A platform wheel of the Python package with libparml.so and the .proto
# files inside (bindings/python/setup.py), in build/wheel/.
.PHONY: wheel test-wheel
wheel: lib
	rm -rf build/wheel bindings/python/build
	PARML_WHEEL_LIBRARY=$(ROOT)/$(BUILD)/libparml.so $(PYTHON) -m pip wheel --no-deps --no-build-isolation \
	  -w build/wheel bindings/python

# An sdist of the Python package: it carries the Swift package in swift/,
# so pip can build the library from it where Swift is installed.
.PHONY: sdist
sdist:
	rm -rf build/sdist
	cd bindings/python && $(PYTHON) setup.py -q sdist -d $(ROOT)/build/sdist
	rm -rf bindings/python/parml.egg-info

# The wheel installed into a fresh venv outside the tree, PARML_LIBRARY
# unset: it imports its own library and trains; then the same from the
# sdist, which builds the library with swift inside pip.
test-wheel: wheel sdist
	bash tests/wheel/run_wheel_test.sh build/wheel build/sdist

# The Python package (bindings/python) against the library just built; a
# failing test fails the target (pytest exits nonzero). -rs lists each
# optional skip with its reason under the summary line.
.PHONY: test-python
test-python: lib
	PARML_LIBRARY=$(ROOT)/$(BUILD)/libparml.so $(PYTHON) -m pytest -q -rs bindings/python/tests

test-swift:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

test-c: lib
	bash tests/c/run_c_tests.sh $(BUILD)

# The MPI layer under mpirun (-np 2, -np 4 --oversubscribe, TCP): collectives
# bitwise against references, failure injection with time bounds, C and
# Python hosts (tests/mpi/run_mpi_tests.sh; docs/mpi.md).
.PHONY: test-mpi
test-mpi: lib
	$(SWIFT) build -c release --product ParmlMPISelfTest
	bash tests/mpi/run_mpi_tests.sh $(BUILD)

# On demand (about 5 minutes): 50 trials per fault kind on the MPI backend
# (a rank stalls, fails, is killed), none may hang (docs/reliability.md).
.PHONY: fault-trials-mpi
fault-trials-mpi: lib
	$(SWIFT) build -c release --product ParmlMPISelfTest
	bash tests/mpi/fault_trials.sh $(BUILD) 50

# Not a test: throughput against the GEMM-only bound (bf16: against the
# oneDNN bf16 products alone, and the GPT and CNN in bf16 against float32
# and PyTorch's bf16 autocast), the CNN against its
# convolutions alone and against PyTorch, collective bandwidth against
# memcpy, the MPI all-reduce against MPI_Allreduce (2 processes) and
# checkpoint save/load against the disk, each measured in one run, merged
# into bench/results.json.
bench: build
	$(MAKE) --no-print-directory build/bench
	$(SWIFT) build -c release --product ParmlBenchCollectives
	$(SWIFT) build -c release --product ParmlBenchPipeline
	$(SWIFT) build -c release --product ParmlBenchMPI
	./build/bench build/bench-engine.json > build/bench-engine.txt
	$(BUILD)/ParmlBenchCollectives > build/bench-collectives.jsonl
	$(BUILD)/ParmlBenchPipeline >> build/bench-collectives.jsonl
	$(SWIFT) build -c release --product ParmlBenchGenerate
	OPENBLAS_NUM_THREADS=1 $(BUILD)/ParmlBenchGenerate >> build/bench-collectives.jsonl
	$(SWIFT) build -c release --product ParmlBenchGPT
	$(BUILD)/ParmlBenchGPT >> build/bench-collectives.jsonl
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 600 \
	  mpirun -np 2 $(BUILD)/ParmlBenchMPI >> build/bench-collectives.jsonl
	$(SWIFT) build -c release --product ParmlBenchMPITrain
	bash tools/bench_mpi_train.sh $(BUILD) >> build/bench-collectives.jsonl
	bash tools/bench_overlap.sh $(BUILD) >> build/bench-collectives.jsonl
	PARML_LIBRARY=$(ROOT)/$(BUILD)/libparml.so PYTHONPATH=bindings/python \
	  $(PYTHON) bench/python_fit.py --jsonl build/bench-collectives.jsonl > build/bench-python.txt
	$(MAKE) --no-print-directory build/bench_activations
	./build/bench_activations >> build/bench-collectives.jsonl
	$(MAKE) --no-print-directory build/bench_files
	./build/bench_files build > build/bench-files.jsonl
	PARML_LIBRARY=$(ROOT)/$(BUILD)/libparml.so PYTHONPATH=bindings/python \
	  $(PYTHON) bench/gpt_char.py --jsonl build/bench-collectives.jsonl > build/bench-gpt.txt
	PARML_LIBRARY=$(ROOT)/$(BUILD)/libparml.so PYTHONPATH=bindings/python \
	  $(PYTHON) bench/gpt_char.py --bf16 --jsonl build/bench-collectives.jsonl > build/bench-gpt-bf16.txt
	$(SWIFT) build -c release --product ParmlBenchCNN
	$(BUILD)/ParmlBenchCNN >> build/bench-collectives.jsonl
	PARML_LIBRARY=$(ROOT)/$(BUILD)/libparml.so PYTHONPATH=bindings/python \
	  $(PYTHON) bench/cnn_fmnist.py --jsonl build/bench-collectives.jsonl > build/bench-cnn.txt
	PARML_LIBRARY=$(ROOT)/$(BUILD)/libparml.so PYTHONPATH=bindings/python \
	  $(PYTHON) bench/cnn_fmnist.py --bf16 --jsonl build/bench-collectives.jsonl > build/bench-cnn-bf16.txt
	PARML_LIBRARY=$(ROOT)/$(BUILD)/libparml.so PYTHONPATH=bindings/python \
	  $(PYTHON) bench/stream_fmnist.py --jsonl build/bench-collectives.jsonl > build/bench-stream.txt
	$(PYTHON) tools/bench_report.py build/bench-engine.json build/bench-collectives.jsonl build/bench-files.jsonl bench/results.json

clean:
	rm -rf .build .build-asan .build-tsan .build-fuzz build

# ---------------------------------------------------------------------------
# Installing (docs/ABI.md). The version is read from include/parml_types.h,
# its one home; the SONAME (Package.swift) carries the major only, and
# `make check-abi` fails when the built library's SONAME disagrees with it.
# ---------------------------------------------------------------------------

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR    ?= $(PREFIX)/share
BINDIR     ?= $(PREFIX)/bin
DESTDIR    ?=
PROTO_DIR  ?= proto
INSTALL    ?= install
parml_version_part = $(shell sed -n 's/^.define PARML_VERSION_$(1)  *\([0-9][0-9]*\).*/\1/p' include/parml_types.h)
VERSION_MAJOR := $(call parml_version_part,MAJOR)
VERSION       := $(VERSION_MAJOR).$(call parml_version_part,MINOR).$(call parml_version_part,PATCH)
HEADERS       := include/parml.h include/parml_types.h include/parml_experimental.h
# Paths under the prefix are written relative to it, so `pkg-config --define-prefix` can relocate.
pc_path = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
# Refreshes the loader's cache when installing as root into a directory it
# searches (/usr/local/lib on Debian); any other prefix needs LD_LIBRARY_PATH
# or an rpath, and a DESTDIR staging install is left alone.
LDCONFIG = if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && \
  cat /etc/ld.so.conf /etc/ld.so.conf.d/*.conf 2>/dev/null | grep -qx '$(LIBDIR)'; then ldconfig; fi
SUBST = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(VERSION_MAJOR)|g'

# Installs the built library (building it first only when there is none:
# run `make lib` or `make` to pick up source changes), the headers, parml.pc,
# the CMake package files and the .proto schemas (when proto/ has any).
install:
	@test -f $(BUILD)/libparml.so || $(MAKE) --no-print-directory lib
	@case "$(VERSION)" in [0-9]*.[0-9]*.[0-9]*) ;; *) echo "cannot read the version from include/parml_types.h"; exit 1;; esac
	$(INSTALL) -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/parml $(DESTDIR)$(INCLUDEDIR)
	$(INSTALL) -m 0755 $(BUILD)/libparml.so $(DESTDIR)$(LIBDIR)/libparml.so.$(VERSION)
	ln -sf libparml.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libparml.so.$(VERSION_MAJOR)
	ln -sf libparml.so.$(VERSION_MAJOR) $(DESTDIR)$(LIBDIR)/libparml.so
	$(INSTALL) -m 0644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/
	$(SUBST) -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|g' -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|g' \
	  -e 's|@DATADIR@|$(call pc_path,$(DATADIR))|g' tools/parml.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/parml.pc
	$(SUBST) -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' \
	  cmake/parmlConfig.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/parml/parmlConfig.cmake
	$(SUBST) cmake/parmlConfigVersion.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/parml/parmlConfigVersion.cmake
	$(INSTALL) -d $(DESTDIR)$(BINDIR)
	$(CC) $(CSTRICT) -O2 -Iinclude cli/parml.c -L$(BUILD) -lparml -Wl,-rpath,$(LIBDIR) -o $(DESTDIR)$(BINDIR)/parml
	@set -e; protos=$$(ls $(PROTO_DIR)/*.proto 2>/dev/null || true); \
	if [ -n "$$protos" ]; then \
	  echo "$(INSTALL) -d $(DESTDIR)$(DATADIR)/parml && $(INSTALL) -m 0644" $$protos "$(DESTDIR)$(DATADIR)/parml/"; \
	  $(INSTALL) -d $(DESTDIR)$(DATADIR)/parml; $(INSTALL) -m 0644 $$protos $(DESTDIR)$(DATADIR)/parml/; \
	else echo "no $(PROTO_DIR)/*.proto yet: nothing for $(DATADIR)/parml"; fi
	@$(LDCONFIG)

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libparml.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libparml.so.$(VERSION_MAJOR) $(DESTDIR)$(LIBDIR)/libparml.so
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/,$(notdir $(HEADERS))) $(DESTDIR)$(LIBDIR)/pkgconfig/parml.pc
	rm -rf $(DESTDIR)$(LIBDIR)/cmake/parml $(DESTDIR)$(DATADIR)/parml
	rm -f $(DESTDIR)$(BINDIR)/parml
	@$(LDCONFIG)

# ---------------------------------------------------------------------------
# The ABI record, abi/parml.abi (docs/ABI.md): exported functions with their
# prototypes, typedefs, struct sizes and field offsets, constant values.
# ---------------------------------------------------------------------------

# Rewrites the record, only when the version in the header was bumped as the
# changes require (MAJOR for removals or changes, MINOR for additions).
# FORCE=1 skips that rule: only while the record's version is unreleased.
abi: lib
	$(PYTHON) tools/abi.py dump --lib $(BUILD)/libparml.so --cc $(CC) > .build/parml.abi.fresh
	$(PYTHON) tools/abi.py update abi/parml.abi .build/parml.abi.fresh $(if $(FORCE),--force)

# The committed record must equal the tree's ABI.
check-abi: lib
	$(PYTHON) tools/abi.py dump --lib $(BUILD)/libparml.so --cc $(CC) > .build/parml.abi.fresh
	$(PYTHON) tools/abi.py check abi/parml.abi .build/parml.abi.fresh

# Installs into a temporary prefix and builds C and CMake hosts from the
# installed copy; checks SONAME, links, the ABI record and the ABI checker.
test-install: lib
	bash tests/install/run_install_tests.sh

# ---------------------------------------------------------------------------
# Hardening (docs/reliability.md): sanitizers and fuzzing. The sanitizer and
# fuzzing builds are debug builds in their own scratch paths (.build-asan,
# .build-tsan, .build-fuzz), compiled by the clang beside swift, whose
# compiler-rt matches the Swift build's sanitizer runtimes.
# ---------------------------------------------------------------------------

SAN_CC            ?= $(dir $(realpath $(shell command -v $(SWIFT))))clang
FUZZ_SECONDS      ?= 600
FUZZ_TEST_SECONDS ?= 60
FUZZ_TARGETS      := fuzz_idx fuzz_strategy fuzz_files fuzz_formats
FUZZ_BUILD        := .build-fuzz
FUZZ_DIR          := build/fuzz
FUZZ_LIB          := $(FUZZ_BUILD)/debug
# -timeout: an input running longer is a hang (the harness's watchdogs are <= 2 s).
FUZZ_FLAGS        ?= -timeout=30 -rss_limit_mb=4096 -print_final_stats=1
FUZZ_CFLAGS       := -std=c11 -Wall -Wextra -Werror -O1 -g -fno-omit-frame-pointer -fuse-ld=lld -Iinclude

# Swift tests under ASan+LSan (UBSan on the C targets) and TSan, and the C ABI
# tests against the sanitized libraries; 0 reports required.
check-sanitizers:
	SWIFT=$(SWIFT) SAN_CC=$(SAN_CC) bash tests/sanitizers/run_sanitizers.sh all

check-asan:
	SWIFT=$(SWIFT) SAN_CC=$(SAN_CC) bash tests/sanitizers/run_sanitizers.sh asan

check-tsan:
	SWIFT=$(SWIFT) SAN_CC=$(SAN_CC) bash tests/sanitizers/run_sanitizers.sh tsan

# libparml.so with ASan and libFuzzer's coverage (edges, comparisons), and
# the fuzz targets linked against it. -O (not the release build's
# -Ounchecked) keeps Swift's overflow and bounds traps and runs the targets
# about twice as fast as -Onone.
fuzz-build:
	$(SWIFT) build --product parml --scratch-path $(FUZZ_BUILD) --sanitize=address -Xswiftc -O \
	  -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp -Xcc -fsanitize=fuzzer-no-link
	@ln -sf libparml.so $(FUZZ_LIB)/libparml.so.$(VERSION_MAJOR)
	@mkdir -p $(FUZZ_DIR)
	@for t in $(FUZZ_TARGETS); do \
	  echo "$(SAN_CC) ... tests/fuzz/$$t.c -o $(FUZZ_DIR)/$$t"; \
	  $(SAN_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined tests/fuzz/$$t.c -o $(FUZZ_DIR)/$$t \
	    -L$(FUZZ_LIB) -lparml -lm -lz -Wl,-rpath,$(ROOT)/$(FUZZ_LIB) || exit 1; \
	done

# Rewrites the committed seed corpora (tests/fuzz/corpus) from make_seeds.c.
# The format1_* seeds (model and checkpoint files written by parml 0.2, and
# _state_size: one of them with an empty AdamW state, the input that found
# the harness refusing a documented PARML_ERR_SHAPE) are kept: this library
# writes format 2, and the format-1 reader is fuzzed too.
fuzz-seeds: fuzz-build
	$(SAN_CC) $(FUZZ_CFLAGS) -fsanitize=address tests/fuzz/make_seeds.c -o $(FUZZ_DIR)/make_seeds \
	  -L$(FUZZ_LIB) -lparml -lz -Wl,-rpath,$(ROOT)/$(FUZZ_LIB)
	rm -rf $(FUZZ_DIR)/format1 && mkdir -p $(FUZZ_DIR)/format1
	cp tests/fuzz/corpus/fuzz_files/format1_* $(FUZZ_DIR)/format1/
	rm -rf tests/fuzz/corpus
	$(FUZZ_DIR)/make_seeds tests/fuzz/corpus
	cp $(FUZZ_DIR)/format1/format1_* tests/fuzz/corpus/fuzz_files/

# make test: each target FUZZ_TEST_SECONDS (60) from the committed seeds, in
# a fresh corpus. A crash, leak, sanitizer report or hang fails it
# (tests/fuzz/run_fuzz.sh); each run prints libFuzzer's "#N DONE" line (N
# executions).
fuzz-test: fuzz-build
	@rm -rf $(FUZZ_DIR)/test-corpus
	@for t in $(FUZZ_TARGETS); do \
	  FUZZ_FLAGS="$(FUZZ_FLAGS)" bash tests/fuzz/run_fuzz.sh $$t $(FUZZ_TEST_SECONDS) $(FUZZ_DIR)/test-corpus/$$t || exit 1; \
	done

# Longer runs: each target FUZZ_SECONDS (600), keeping its corpus in
# build/fuzz/corpus/<target> between runs.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  FUZZ_FLAGS="$(FUZZ_FLAGS)" bash tests/fuzz/run_fuzz.sh $$t $(FUZZ_SECONDS) $(FUZZ_DIR)/corpus/$$t || exit 1; \
	done
