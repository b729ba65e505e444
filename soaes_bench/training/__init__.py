"""Training: one accelerate loop (loop.py), pure losses (losses.py), Qwen2 sizes (model.py), data packing and SFT
masking (data.py), and the phases that use them: base.py, cpt.py, sft.py, distill.py, gated by gates.py and run in
order by pipeline.py."""
