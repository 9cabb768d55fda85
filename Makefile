# groupmates: the two commands of the README, and the benchmarks.
#   make demo   - set up everything, then train a small GPT on the demo pool (built from Debian
#                 packages) with random vs Group-MATES online selection (the main job; CPU, under
#                 10 minutes on 2 cores)
#   make test   - set up everything, then build and run every test (the C++ suites also under TSan and ASan+UBSan,
#                 the Python suite also over extensions built with ASan+UBSan)
SHELL := /bin/bash
PY := /usr/bin/python3
BUILD ?= build
VENV ?= .venv
JOBS ?= 2
CORPUS := data/corpus
# Unity builds (16 files a unit) of every target but the loader core library (not the fuzz project): a cold build of $(BUILD) took
# 209 s instead of 410 s on 2 cores; also the sanitizer builds and both Python builds below. A file that
# compiles only thanks to an earlier one of its unit (a missing #include) shows with UNITY=OFF (for $(BUILD), in
# a fresh directory: BUILD=build-files UNITY=OFF; the other builds are reconfigured with it every time).
UNITY ?= ON
comma := ,
UNITY_CMAKE = -DCMAKE_UNITY_BUILD=$(UNITY) -DCMAKE_UNITY_BUILD_BATCH_SIZE=16
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release $(UNITY_CMAKE)

.PHONY: all deps corpus configure build demo test test-unit test-sanitizers bench-throughput bench-select clean
.PHONY: python-install test-python bench-python

all: build

deps:
	@bash scripts/install-deps.sh

corpus: deps
	@bash scripts/prepare-corpus.sh $(CORPUS)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# The main job: TinyGpt on the demo pool (mixed usefulness; held-out Emma as the target), random vs
# Group-MATES with the library's defaults, same seed and budget; ends with a table (final loss, cost
# to reach random's loss, loader wait by cause, probe share) and a RESULT line. DEMO_ARGS: e.g. --steps.
POOL_DEMO ?= data/pool-demo
DEMO_ARGS ?=
.PHONY: prepare-pool-demo
prepare-pool-demo: deps
	@bash scripts/prepare-pool.sh --variant demo $(POOL_DEMO)

demo: build prepare-pool-demo
	$(BUILD)/examples/online_demo --data $(POOL_DEMO) $(DEMO_ARGS)

test-unit: build corpus
	cd $(BUILD) && GROUPMATES_CORPUS=$(CURDIR)/$(CORPUS) ctest --output-on-failure -j$(JOBS) --timeout 900

# Everything we wrote under ThreadSanitizer ($(BUILD)-thread) and under AddressSanitizer with
# UndefinedBehaviorSanitizer ($(BUILD)-address): the loader core, the engine (selection, model, probe, the
# online loop with its four threads, collectives), the examples' model and their C++ suites (not what
# tokenizes beside a linked LibTorch: tokenizer_with_torch_test and the README's C++ blocks are not built
# there, OnlineLoaderTest.EndToEndOnTheEmbeddedCorpus skips itself; they need dlopen(RTLD_DEEPBIND), which
# the sanitizer runtimes refuse); -O1 -g1, LibTorch uninstrumented,
# no suppression file. Any report fails (UB is not recovered; ASan detects leaks), also in a child process a
# test expects to fail (exit code 86 under ASan/UBSan, TSan's 66: never the 1 or 2 of our tools' errors). Unity
# builds (UNITY: from cold 217 s and 169 s for the ASan and TSan test targets instead of
# 823 s and 518 s). Under TSan OpenBLAS runs single-threaded: its own worker pool is
# uninstrumented and hands work over through spin flags TSan cannot see (a report inside sgemm, in
# OpenBLAS's frames only); our threads still call it concurrently.
SANITIZER_SUITES = tests/loader_tests tests/selection/selection_tests tests/model/model_tests tests/probe/probe_tests \
  tests/online/online_tests tests/distributed/distributed_tests tests/examples/example_model_tests
SANITIZER_CMAKE = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGROUPMATES_LOADER_ONLY=OFF $(UNITY_CMAKE)
# $(call configure_sanitizer,DIR_SUFFIX,FLAGS): (re)configures $(BUILD)-DIR_SUFFIX with -fsanitize=FLAGS.
configure_sanitizer = cmake -S . -B $(BUILD)-$(1) $(SANITIZER_CMAKE) -DGROUPMATES_SANITIZE=$(2) >/dev/null
test-sanitizers: deps corpus
	@for san in thread address; do \
	  flags=$$san; [ $$san = address ] && flags=address,undefined; \
	  blas=; [ $$san = thread ] && blas=OPENBLAS_NUM_THREADS=1; \
	  $(call configure_sanitizer,$$san,$$flags) && \
	  cmake --build $(BUILD)-$$san -j$(JOBS) --target $(notdir $(SANITIZER_SUITES)) || exit 1; \
	  for t in $(SANITIZER_SUITES); do \
	    echo "== $$(basename $$t) under -fsanitize=$$flags" && \
	    env $$blas TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ASAN_OPTIONS="detect_leaks=1:exitcode=86" \
	    UBSAN_OPTIONS="print_stacktrace=1:exitcode=86" GROUPMATES_CORPUS=$(CURDIR)/$(CORPUS) $(BUILD)-$$san/$$t --gtest_brief=1 || exit 1; \
	  done; \
	done

# The Python suite (tests/python) over the extensions (_core, _engine, the test hooks) built with ASan+UBSan in
# $(BUILD)-address (after test-sanitizers), the interpreter and torch uninstrumented (scripts/test-python-asan.sh).
.PHONY: test-python-asan
test-python-asan: deps corpus $(VENV)/bin/python
	$(call configure_sanitizer,address,address$(comma)undefined)
	bash scripts/test-python-asan.sh $(BUILD)-address $(CURDIR)/$(CORPUS) $(VENV)/bin/python $(JOBS)

# Serially, also under make -j: test-sanitizers and test-python-asan build in the same tree, and every recipe
# runs its own jobs (JOBS).
.NOTPARALLEL:
test: test-unit test-sanitizers test-python test-python-asan fuzz-smoke
	@echo "make test: all suites passed"

bench-throughput: build
	$(PY) bench/bench_throughput.py --build $(BUILD)

# Selection engine on CPU: embed + score + cluster + select, windows of 4,096 x 1,024 tokens.
# BENCH_SELECT_ARGS: e.g. "--encoder torchscript [--encoder-path FILE.pt] --window 1024 --seq-len 256".
BENCH_SELECT_ARGS ?=
bench-select: configure
	cmake --build $(BUILD) -j$(JOBS) --target bench_select
	$(BUILD)/bench/bench_select $(BENCH_SELECT_ARGS)

# JSONL at scale (LibTorch-free): writes (once) 1,000 .jsonl.zst shards holding 1 GiB of JSONL in
# 64 KiB frames under $(BUILD)/bench-jsonl-corpus, then streams them in fresh processes, cold (no line
# index cached), then 5 rounds of (SentencePiece alone, the default shuffle warm, the global shuffle warm);
# ends with RESULT jsonl_vs_spm_encode= jsonl_peak_rss_vs_bound= startup_1000_shards_s= ...
# jsonl_vs_spm_encode_global= (bound: 128 MiB per process). BENCH_JSONL_ARGS: e.g. --mib 2048 --rounds 3.
BENCH_JSONL_ARGS ?=
.PHONY: bench-jsonl
bench-jsonl: configure corpus
	cmake --build $(BUILD) -j$(JOBS) --target bench_jsonl
	$(BUILD)/bench/bench_jsonl --tokenizer $(CORPUS)/austen.model --text $(CORPUS)/austen.jsonl --dir $(BUILD)/bench-jsonl-corpus --hf-tokenizer tests/data/tokenizer/gpt2-4k.tokenizer.json $(BENCH_JSONL_ARGS)

# Start-up over BENCH_STARTUP_FILES (1,000) small token files (LibTorch-free): construction, construction from a
# saved state, to the first batch, and the sampled content hashes alone; RESULT startup_files= open_s= ... hash_share=.
BENCH_STARTUP_ARGS ?=
.PHONY: bench-startup
bench-startup: configure
	cmake --build $(BUILD) -j$(JOBS) --target bench_startup
	$(BUILD)/bench/bench_startup --dir $(BUILD)/bench-startup-files $(BENCH_STARTUP_ARGS)

# libFuzzer harnesses of every parser (fuzz/): a clang ASan+UBSan build in $(BUILD)-fuzz, seed corpora
# written by fuzz/make_seeds.cpp from real small files. `make fuzz` runs each harness for its share of
# FUZZ_SECONDS and ends with RESULT fuzz_targets= fuzz_execs= fuzz_crashes=; `make fuzz-smoke` (in
# `make test`) runs each once over its seeds and the kept regression inputs (fuzz/regressions/).
FUZZ_BUILD ?= $(BUILD)-fuzz
FUZZ_SECONDS ?= 180
.PHONY: fuzz-build fuzz fuzz-smoke
fuzz-build: deps corpus
	cmake -S fuzz -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	$(FUZZ_BUILD)/make_seeds $(FUZZ_BUILD)/seeds $(CORPUS)
	if [ -x $(FUZZ_BUILD)/make_weight_seeds ]; then $(FUZZ_BUILD)/make_weight_seeds $(FUZZ_BUILD)/seeds/fuzz_model_weights; fi

fuzz: fuzz-build
	bash scripts/run-fuzz.sh $(FUZZ_BUILD) run $(FUZZ_SECONDS)

fuzz-smoke: fuzz-build
	bash scripts/run-fuzz.sh $(FUZZ_BUILD) smoke

# Kill -9 resume (tests/examples/kill_resume.py): the examples' GPT trained by GroupMatesLoader in plain and
# Group-MATES mode (refresh at_step), SIGKILLed KILLS times per mode at random moments (seed printed) and
# restarted from its last atomic checkpoint; ends with RESULT kills= resumed_identical= (equal when every
# restarted process emitted the uninterrupted run's batches). The short run (3 kills) is in test-python.
KILLS ?= 20
KILL_ARGS ?=
.PHONY: kill-resume
kill-resume: python-install corpus
	$(VENV)/bin/python tests/examples/kill_resume.py --kills $(KILLS) --corpus $(CORPUS) $(KILL_ARGS)

# Soak (bench/soak.py): the loader with Group-MATES selection and probes on (every 50 steps, each refresh published:
# no budget, gate or back-off), at full speed for SOAK_MINUTES (30)
# or SOAK_SECONDS; RSS, threads, the loader's pooled buffers and its queue depths (prefetch, label buffer, replay
# buffer, model versions, pending refreshes) sampled every 2 s; fails if RSS grows 5% or more, threads or a queue's
# depth grow, or a depth passes its bound, after the warm-up (first third). Samples and a plot in $(BUILD)/soak;
# ends with RESULT soak_minutes= rss_growth_pct= threads_growth= ... queues_growth= ... Not in `make test`.
SOAK_MINUTES ?= 30
SOAK_SECONDS ?= $(shell echo $$(( $(SOAK_MINUTES) * 60 )))
.PHONY: soak
soak: python-install corpus
	$(VENV)/bin/python bench/soak.py --seconds $(SOAK_SECONDS) --corpus $(CORPUS) --out $(BUILD)/soak

clean:
	rm -rf $(BUILD) $(BUILD)-thread $(BUILD)-address $(BUILD)-fuzz

# The Python package (python/): installed into a venv that sees Debian's torch; the extension is
# built by CMake in $(BUILD)-py (LibTorch-free, so it fits any torch the interpreter has).
# groupmates._engine (selection + probes of a Python model; LibTorch, built in $(BUILD)-py-engine):
# required here so a broken engine fails the install; `make ... GROUPMATES_ENGINE=auto` tolerates it.
GROUPMATES_ENGINE ?= 1
$(VENV)/bin/python:
	$(PY) -m venv --system-site-packages $(VENV)

python-install: deps $(VENV)/bin/python
	GROUPMATES_BUILD_DIR=$(CURDIR)/$(BUILD)-py GROUPMATES_JOBS=$(JOBS) GROUPMATES_ENGINE=$(GROUPMATES_ENGINE) \
	  GROUPMATES_CMAKE_ARGS="$(UNITY_CMAKE) $$GROUPMATES_CMAKE_ARGS" $(VENV)/bin/pip install -q --no-build-isolation --no-deps --disable-pip-version-check ./python

# The test-only module groupmates_testhooks (python/src/testhooks.cpp; never installed), built in the
# engine's build directory, where tests/python/conftest.py finds it.
.PHONY: python-testhooks
python-testhooks: python-install
	cmake --build $(BUILD)-py-engine -j$(JOBS) --target groupmates_testhooks

test-python: python-testhooks corpus
	cd tests/python && GROUPMATES_CORPUS=$(CURDIR)/$(CORPUS) $(CURDIR)/$(VENV)/bin/python -m pytest -q -p no:cacheprovider .

# Selection shared across 2 and 4 Gloo processes (the 4-process cases take ~50 s more than make test's).
.PHONY: test-distributed
test-distributed: python-testhooks corpus
	cd tests/python && GM_TEST_MANY_RANKS=1 GROUPMATES_CORPUS=$(CURDIR)/$(CORPUS) $(CURDIR)/$(VENV)/bin/python -m pytest -q \
	  -p no:cacheprovider test_distributed_selection.py test_distributed.py

bench-python: python-install
	$(VENV)/bin/python bench/bench_python.py

# Selection on 1, 2 and 4 Gloo processes (bench/bench_distributed.py), the same global batch, window and probe
# plan: rollouts, labels and bytes per refresh, probe seconds per rank, model hashes, the union of the ranks'
# selections against single processes; ends with RESULT probe_rollouts_per_rank_4_vs_1= model_hash_equal=
# union_equals_reference=. BENCH_DISTRIBUTED_ARGS: e.g. --worlds 1,2 (x is then nan: it needs 1 and 4).
BENCH_DISTRIBUTED_ARGS ?=
.PHONY: bench-distributed
bench-distributed: python-install
	$(VENV)/bin/python bench/bench_distributed.py $(BENCH_DISTRIBUTED_ARGS)

# Data-efficiency benchmark pool + held-out reference set (issue 5), from Debian/npm packages.
POOL ?= data/pool
.PHONY: prepare-pool bench-efficiency
prepare-pool: deps
	@bash scripts/prepare-pool.sh $(POOL)

# A second benchmark pool (in-domain: Linux kernel documentation prose; never used to choose
# defaults) and the two tuning pools (in-domain: World English Bible books; man pages): defaults are
# chosen on them only, never reported as a benchmark figure. Same machinery: scripts/prepare-pool.sh --variant.
#   make bench-efficiency BENCH_ARGS="--pool $(POOL2)/pool.jsonl --reference $(POOL2)/reference.jsonl"
POOL2 ?= data/pool2
POOL_DEV ?= data/pool-dev
POOL_DEV2 ?= data/pool-dev2
.PHONY: prepare-pool2 prepare-pool-dev prepare-pool-dev2
prepare-pool2: deps
	@bash scripts/prepare-pool.sh --variant pool2 $(POOL2)

prepare-pool-dev: deps
	@bash scripts/prepare-pool.sh --variant dev $(POOL_DEV)

# A second tuning pool (in-domain: man pages, technical reference prose; reference: section 7).
prepare-pool-dev2: deps
	@bash scripts/prepare-pool.sh --variant dev2 $(POOL_DEV2)

# Data-efficiency benchmark (issues 5, 13): random, importance resampling, MATES (top-k),
# Group-MATES and its ablations, oracle mix (in-domain only); same TinyGpt, budget and seeds; on the
# shipped pool and the second pool; tokens, FLOPs and wall clock to random's final loss. 3 seeds by
# default; curves.csv, efficiency.png and summary.json per pool in $(BUILD)/bench-efficiency;
# last lines RESULT pool2 ... and RESULT ... A user's own data (one pool):
#   make bench-efficiency BENCH_ARGS="--pool my_pool.jsonl --reference my_reference.jsonl"
SEEDS ?= 0,1,2
BENCH_ARGS ?=
bench-efficiency: configure $(if $(findstring --pool,$(BENCH_ARGS)),,prepare-pool prepare-pool2)
	cmake --build $(BUILD) -j$(JOBS) --target bench_efficiency
	$(PY) bench/bench_efficiency.py --build $(BUILD) --seeds $(SEEDS) \
	  $(if $(findstring --pool,$(BENCH_ARGS)),,--pool $(POOL)/pool.jsonl --reference $(POOL)/reference.jsonl \
	    --pool2 $(POOL2)/pool.jsonl --reference2 $(POOL2)/reference.jsonl) $(BENCH_ARGS)

# Probe-label study (issue 13): how reproducible a probe label is per design (reference rows,
# position in a rollout, a paired control step, a first-order gradient label) and what a refitted
# influence model gets from fixed labels; tuning pool only (docs/PROBE_LABELS.md). STUDY_ARGS: e.g.
# --seeds 100 --extra "--candidates 24 --snapshots 100".
STUDY_ARGS ?=
.PHONY: probe-label-study
probe-label-study: configure prepare-pool-dev
	cmake --build $(BUILD) -j$(JOBS) --target probe_label_study
	$(PY) bench/probe_label_study.py --build $(BUILD) --pool $(POOL_DEV)/pool.jsonl \
	  --reference $(POOL_DEV)/reference.jsonl $(STUDY_ARGS)
