"""The study's method and its references: the search, the label check, the dataset, LoRA training, the gate, HAG's two stages, the oracles, the ablations, notebook 00's sensitivity runs."""
