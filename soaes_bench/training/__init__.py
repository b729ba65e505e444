"""Training: one accelerate loop (loop.py), pure losses (losses.py), data packing and SFT masking (data.py), and the
phases that use them: pretrain.py (phase 0, the base model), cpt.py, sft.py, distill.py, each with the gates its
recipe declares (gate_spec.py). Model files: soaes_bench/models.py; the gated order: soaes_bench/pipeline.py."""
