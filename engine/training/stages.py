"""The two training stages as TRL trainers (SFTTrainer, then DPOTrainer), configured alike.

DPO continues the SFT adapter: the caller passes `PeftModel.from_pretrained(base, sft_adapter,
is_trainable=True)` as the model and no `peft_config`, and TRL copies that adapter into a frozen
"ref" adapter — the DPO reference is the SFT policy, not the base model. With no SFT stage
(cold start) DPO gets a fresh LoRA through `peft_config` and the reference is the base model.
"""

from __future__ import annotations

from pathlib import Path

from engine.record.config import RunConfig
from engine.training import distributed
from engine.record.errors import UserError


def lora_config(config: RunConfig, model):
    """The run's LoRA, after checking that its target modules exist in this model."""
    from peft import LoraConfig

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if not present & set(config.lora_targets):
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                         if type(module).__name__.startswith("Linear")})
        raise UserError(f"none of the LoRA targets ({', '.join(config.lora_targets)}) is a module of this model; "
                        f"set lora_targets to some of: {', '.join(linear)}")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), bias="none", task_type="CAUSAL_LM")


def on_cpu(model) -> bool:
    return next(model.parameters()).device.type == "cpu"


def prepare_base(model):
    """peft's k-bit preparation for a 4-bit base (fp32 norms, input grads); others unchanged."""
    if not getattr(model, "is_loaded_in_4bit", False):
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=not on_cpu(model),
                                           gradient_checkpointing_kwargs=distributed.checkpointing_kwargs())


def _arguments(config_class, config: RunConfig, output_dir: Path, model, learning_rate: float, **extra):
    """The arguments both stages share: schedule, batch, checkpoints every N steps, a log per step.

    On CPU: fp32, no activation checkpointing, `use_cpu`. Logging every step makes the first
    DPO log describe the first batch before any update (TRL computes the reward metrics in the
    forward pass that precedes the optimizer step)."""
    import torch

    cpu = on_cpu(model)
    return config_class(
        output_dir=str(output_dir),
        learning_rate=learning_rate,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # below 1 it is read as a share of the total steps
        max_length=config.max_length,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=None,
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        disable_tqdm=True,
        use_cpu=cpu,
        bf16=not cpu and torch.cuda.is_bf16_supported(),
        activation_checkpointing=not cpu,
        dataloader_num_workers=0,
        **distributed.trainer_arguments(),
        **extra,
    )


def _lora_weights(model) -> dict:
    return {name: param.detach().float().clone() for name, param in model.named_parameters() if "lora_" in name}


def _finish(trainer, before: dict):
    """Drop TRL's log printer and keep LoRA weights exactly as they were, in fp32.

    For a 4-bit base TRL casts the trainable LoRA weights to bf16 (the QLoRA recipe). We undo
    that with the fp32 values from `before` the trainer was built: bf16 rounds away updates as
    small as a DPO step at lr 5e-6, and TRL's frozen "ref" copy of the SFT adapter is taken
    before the cast, so a rounded policy would differ from its own reference before any
    update. Mixed precision on a GPU still computes in bf16 through autocast."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    for name, param in trainer.model.named_parameters():
        if "lora_" in name:
            param.data = before[name].to(param.device) if name in before else param.data.float()
    return trainer


def sft_trainer(config: RunConfig, model, tokenizer, examples: list[dict], output_dir: Path, callbacks: list):
    """SFTTrainer on prompt/completion conversations; the loss covers the completion only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = _arguments(SFTConfig, config, output_dir, model, config.sft_lr)
    trainer = SFTTrainer(model=prepare_base(model), args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer, peft_config=lora_config(config, model), callbacks=callbacks)
    return _finish(trainer, before={})


def dpo_model(base, sft_adapter: Path):
    """The SFT policy, trainable, ready to continue into DPO."""
    from peft import PeftModel

    return PeftModel.from_pretrained(prepare_base(base), str(sft_adapter), is_trainable=True)


def dpo_trainer(config: RunConfig, model, tokenizer, pairs: list[dict], output_dir: Path, callbacks: list):
    """DPOTrainer on prompt/chosen/rejected conversations. `model` is either the SFT policy from
    `dpo_model` (reference = SFT policy) or a bare base model (cold start: a new LoRA whose
    reference is the base with the adapter switched off)."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    args = _arguments(DPOConfig, config, output_dir, model, config.dpo_lr, beta=config.beta)
    continuing = isinstance(model, PeftModel)
    before = _lora_weights(model) if continuing else {}
    trainer = DPOTrainer(model=model if continuing else prepare_base(model), args=args,
                         train_dataset=Dataset.from_list(pairs), processing_class=tokenizer,
                         peft_config=None if continuing else lora_config(config, model), callbacks=callbacks)
    return _finish(trainer, before)
