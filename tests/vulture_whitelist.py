"""Names the dead-code check (tests/test_lint.py) must not report: used by frameworks or by name, not by a call it can see."""

_ = object()
_.get_seq_length  # transformers calls it on our KV cache layer (engine/kv.py)
_.hf_quantizer  # set to None on the dequantized GGUF model so transformers treats it as plain weights (models.py)
_.is_quantized  # likewise
new_tokens  # Cost/Budget field, read through getattr when a stage's cost is booked (scoring.py, search.py)
mean_train_loss  # TrainResult field, written to the adapter's result file (training.py)
pytestmark  # pytest reads module-level marks by name
majority_exact_match  # Gate fields, read from the gate table (gate.py; notebooks 03, 05 and render)
majority_distance  # likewise
_.on_train_begin  # transformers' TrainerCallback hooks, called by the Trainer (training.py)
_.on_step_end  # likewise
_.on_step_begin  # likewise (scripts/benchmarks/bench_train.py)
_.should_training_stop  # TrainerControl flag the Trainer reads after each step (scripts/benchmarks/gpu_check.py)
_restore_logging  # an autouse pytest fixture (tests/test_runlog.py): pytest calls it by being autouse
