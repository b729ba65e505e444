# soaes-bench: `make run` evaluates the embedded model, `make test` runs the tests. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test check calibrate reports reference data bench clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes; a plain venv + pip, exact pins (torch==2.13.0 is the CPU wheel).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==26.3"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

run: install
	$(BIN)/soaes-bench run --suite all --output reports/latest

test: install
	$(BIN)/python -m pytest

check: install
	$(BIN)/soaes-bench run --suite all --output reports/latest
	$(BIN)/soaes-bench check --baseline reports/baseline/results.json --results reports/latest/results.json --policy reports/policy.yaml

# reports/policy.yaml: check's tolerances from the target's run-to-run spread (docs/statistics.md#calibrated-tolerances)
calibrate: install
	$(BIN)/soaes-bench calibrate --model soaes_bench/assets/models/target --suite all --with reports/baseline/results.json --output reports/policy.yaml

data: install
	$(BIN)/soaes-bench data build --no-tokenizer
	$(BIN)/soaes-bench data check

bench: install
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_sft_grouping.py
	$(BIN)/python benchmarks/bench_draft_losses.py
	$(BIN)/python benchmarks/bench_speculative.py --threads 1 --undistilled-draft soaes_bench/assets/models/draft_undistilled
	$(BIN)/python benchmarks/bench_memory.py

# Reports of the shipped models: the CI baseline, the speculative-decoding profiles and figures (20-50 min on 2 cores,
# by CPU: without native bf16 the profiles run in float32).
# reports/base is the shipped base model on the whole suite; reports/untrained(_plain) a random init, reports/content_free
# the content-free model (`--model constant:`), the runs every gate must fail (docs/results/2026-12-reference.md).
reports: install
	$(BIN)/soaes-bench run --output reports/baseline
	$(BIN)/soaes-bench run --model soaes_bench/assets/models/base --output reports/base
	# what every gate must fail: a random init of the target's shape (seed 1234) and the content-free model
	$(BIN)/python -c "from soaes_bench.models import load_tokenizer, new_model, save_model; \
		t = load_tokenizer(); save_model(new_model('target', t, 1234), t, 'runs/untrained')"
	$(BIN)/soaes-bench run --model runs/untrained --output reports/untrained
	$(BIN)/soaes-bench run --model runs/untrained --tasks soaes_general_mc_cloze,soaes_domain_knowledge_cloze \
		--chat-template off --output reports/untrained_plain
	$(BIN)/soaes-bench run --model constant: --output reports/content_free
	$(BIN)/soaes-bench profile --threads 1 --hf-baseline --save-outputs --output reports/profile
	$(BIN)/soaes-bench profile --threads 1 --hf-baseline --ignore-eos --gamma 1,2,3,4 --contexts 128 --output reports/profile_steady
	$(BIN)/soaes-bench profile --threads 1 --ignore-eos --gamma 1,2,3,4 --contexts 128 --draft soaes_bench/assets/models/draft_undistilled --output reports/profile_undistilled
	$(BIN)/soaes-bench plot reports/untrained reports/base reports/baseline --kind models --output reports/figures
	# phases: the base and the final target on the whole suite, the CPT model on what its gates read (make reference)
	$(BIN)/soaes-bench plot reports/base reports/reference/cpt/eval reports/baseline --kind phases --output reports/figures
	$(BIN)/soaes-bench plot reports/profile_undistilled/profile.json reports/profile_steady/profile.json --kind distillation --output reports/figures

# The reference pipeline (CPT -> progressive SFT -> distillation; v6 recipe: ~29 minutes on a 2-core AMD EPYC, whose
# models are the shipped ones, 23 on an Intel Xeon, whose models differ in the last bits: run log
# docs/results/2026-12-reference-v6.md) and its committed reports (gates, forgetting, ablations, evaluations, figures).
# It removes two files made by hand after a run: sft/power_2pct.txt (`soaes-bench power`, command in the v6 run log)
# and cpt/compare_base_plain.md (`soaes-bench compare` of the base's and the CPT model's plain-text runs): remake
# them, or restore them from git when the models did not change.
REFERENCE_EVALS := base floor cpt sft sft/single_stage
# The training sets are built from pinned archives, not committed (DATA_CARD.md): built here when missing.
TRAINING_DATA := training/data/domain.jsonl
$(TRAINING_DATA): | $(STAMP)
	$(MAKE) data

reference: install $(TRAINING_DATA)
	$(BIN)/soaes-bench pipeline --recipe training/recipes/reference.yaml --resume
	rm -rf reports/reference && mkdir -p reports/reference
	cd runs/reference && find . -maxdepth 2 \( -name 'gate.*' -o -name 'forgetting.*' -o -name 'ablation.*' \
		-o -name 'phase_metrics.json' -o -name 'summary.json' -o -name 'timings.json' \) -exec cp --parents {} ../../reports/reference/ \;
	for d in $(REFERENCE_EVALS); do for e in eval eval_plain; do if [ -d runs/reference/$$d/$$e ]; then \
		mkdir -p reports/reference/$$d/$$e && cp -r runs/reference/$$d/$$e/. reports/reference/$$d/$$e/; fi; done; done
	$(BIN)/soaes-bench plot reports/reference/sft/single_stage/eval reports/reference/sft/eval --kind sft-ablation --output reports/figures
	$(BIN)/soaes-bench report reports/reference

clean:
	rm -rf $(VENV) build dist .pytest_cache reports/latest
