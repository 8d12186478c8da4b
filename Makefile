# takt: two commands do everything on a fresh machine.
#   make demo   install dependencies, build, run the welding-robot lifecycle end to end, leave the server up
#   make test   install dependencies, build, run every test
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
  CMAKE_FLAGS += -DTAKT_WERROR=ON
endif

.PHONY: all deps configure build test demo demo-ci format clean asan bench

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

demo: build
	bash scripts/demo.sh

# The demo, non-interactively: runs the slice and exits (used by CI and tests).
demo-ci: build
	TAKT_DEMO_EXIT=1 bash scripts/demo.sh

# An ASan+UBSan build of the tests.
asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DTAKT_SANITIZE=ON"

# Benchmarks against peers measured in the same run (bench/README.md); results in bench/results/.
bench: build
	$(BUILD)/bench/takt_ingest_bench --size-mb $${BENCH_MB:-1024} --repeat $${BENCH_REPEAT:-3} --out bench/results/ingest.md
	$(BUILD)/bench/takt_pipeline_bench --chain $${BENCH_CHAIN:-50} --repeat $${BENCH_REPEAT:-5} --out bench/results/pipeline.md
	$(BUILD)/bench/takt_events_bench --events $${BENCH_EVENTS:-2000} --repeat $${BENCH_REPEAT:-5} --out bench/results/events.md
	$(BUILD)/bench/takt_release_bench --repeat $${BENCH_APPROVALS:-20} --out bench/results/release.md

# takt's online inference vs Flask+gunicorn and a static nginx, with wrk (bench/serving/run.py; needs wrk,
# nginx, gunicorn and python3-flask from Debian, so not part of `make bench`). About 12 minutes.
.PHONY: bench-serving
bench-serving: build
	/usr/bin/python3 bench/serving/run.py --takt $(BUILD)/takt --repeat $${BENCH_REPEAT:-3} --out bench/results/serving.md

# The same with the servers on CPU 0 and wrk and the open-loop client on CPU 1 (neither waits for the other's core).
.PHONY: bench-serving-pinned
bench-serving-pinned: build
	/usr/bin/python3 bench/serving/run.py --takt $(BUILD)/takt --repeat $${BENCH_REPEAT:-3} --server-cpus 0 --client-cpus 1 \
	  --threads 1 --out bench/results/serving-pinned.md

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h')

clean:
	rm -rf $(BUILD)
