# dlqat: plain Makefile. `make` builds build/libdlqat.a and build/dlqat;
# `make test` builds and runs every tests/test_*.c; `make bench` builds bench/.
CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g -std=c11 -Wall -Wextra -Wpedantic -Wno-unused-parameter -fopenmp
# OpenBLAS: prefer Debian's OpenMP build (libopenblas-openmp-dev) so BLAS and
# our OpenMP loops share one thread pool; the pthread build makes the two
# pools fight over the cores (3x slower here).
OPENBLAS_DIR ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp))
ifneq ($(OPENBLAS_DIR),)
OPENBLAS_INC := $(subst /lib/,/include/,$(OPENBLAS_DIR))
CPPFLAGS += -D_GNU_SOURCE -Isrc -Iinclude -I$(OPENBLAS_INC)
LDLIBS  += -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas -ljansson -lm -fopenmp
else
CPPFLAGS += -D_GNU_SOURCE -Isrc -Iinclude $(shell pkg-config --cflags openblas 2>/dev/null)
LDLIBS  += -lopenblas -ljansson -lm -fopenmp
endif
ifeq ($(WERROR),1)
CFLAGS  += -Werror
endif

BUILD   := build
SRC     := $(shell find src -name '*.c' -not -path 'src/kernels/cuda/*' | sort)
OBJ     := $(SRC:%.c=$(BUILD)/%.o)
TOOLS   := $(sort $(wildcard tools/*.c))
TOOLOBJ := $(TOOLS:%.c=$(BUILD)/%.o)
TESTS   := $(sort $(wildcard tests/test_*.c))
TESTBIN := $(TESTS:tests/%.c=$(BUILD)/tests/%)
BENCHES := $(sort $(wildcard bench/bench_*.c))
BENCHBIN:= $(BENCHES:bench/%.c=$(BUILD)/bench/%)
LIB     := $(BUILD)/libdlqat.a

.PHONY: all test bench clean
all: $(LIB) $(BUILD)/dlqat $(TESTBIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/dlqat: $(TOOLOBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(TOOLOBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/t.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -MMD -MP -o $@ $< $(LIB) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

test: all
	@bash tests/run.sh

bench: $(BENCHBIN) $(BUILD)/dlqat

clean:
	rm -rf $(BUILD)

-include $(OBJ:.o=.d) $(TOOLOBJ:.o=.d) $(TESTBIN:=.d)
