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

all: build

deps:
	@tools/install-deps.sh

# libparml.so (release). SwiftPM also writes the raw @c header here.
lib:
	$(SWIFT) build -c release --product parml

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

build/train_fashion_mnist: examples/train_fashion_mnist.c include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -o $@

build/bench: bench/bench.c include/parml.h include/parml_types.h $(BUILD)/libparml.so
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 $< $(CLINK) -ldl -o $@

# Trains an MLP on Fashion-MNIST through the C API; ends with "test accuracy: 0.NNNN".
demo: build
	$(MAKE) --no-print-directory build/train_fashion_mnist
	./build/train_fashion_mnist $(FASHION)

test: build test-swift test-c test-examples test-e2e

# Learns from real IDX files (MNIST beside the checkout, else Fashion-MNIST).
test-e2e: lib
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 tests/e2e/learns_mnist.c $(CLINK) -o build/learns_mnist
	./build/learns_mnist

# The README's minimal program must build warning-free and learn.
test-examples: lib
	@mkdir -p build
	$(CC) $(CSTRICT) -O2 examples/minimal.c $(CLINK) -o build/minimal
	./build/minimal

test-swift:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

test-c: lib
	bash tests/c/run_c_tests.sh $(BUILD)

# Not a test: throughput against the GEMM-only bound and collective bandwidth
# against memcpy, measured in one run, merged into bench/results.json.
bench: build
	$(MAKE) --no-print-directory build/bench
	$(SWIFT) build -c release --product ParmlBenchCollectives
	./build/bench build/bench-engine.json > build/bench-engine.txt
	$(BUILD)/ParmlBenchCollectives > build/bench-collectives.jsonl
	$(PYTHON) tools/bench_report.py build/bench-engine.json build/bench-collectives.jsonl bench/results.json

clean:
	rm -rf .build build
