"""Run in a fresh interpreter without raybio (see helpers.run_without_raybio): load exported models
with plain transformers, write their logits, encode records, fine-tune with the HF Trainer."""
# ruff: noqa: E402  (third-party imports must follow the sys.path set-up)

import json
import sys
import time

t0 = time.time()

with open(sys.argv[1]) as fh:
    job = json.load(fh)
sys.path.extend(job["site_packages"])

try:
    import raybio  # noqa: F401

    raybio_importable = True
except ImportError:
    raybio_importable = False

# After sys.path is set: these come from the environment's site-packages only.
import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

answer = {"import_s": time.time() - t0, "raybio_importable": raybio_importable, "sys_path": sys.path}
answer.update(models={}, tokens={})
for name, spec in job["models"].items():
    auto = AutoModelForCausalLM if spec["causal"] else AutoModelForMaskedLM
    model = auto.from_pretrained(spec["dir"], trust_remote_code=True).eval()
    ids = torch.from_numpy(np.load(spec["ids"]))
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    np.save(spec["logits_out"], logits.float().numpy())
    answer["models"][name] = {"class": type(model).__name__, "module": type(model).__module__}

if "backbone" in job:  # AutoModel: the final-norm hidden states
    from transformers import AutoModel

    bb = job["backbone"]
    model = AutoModel.from_pretrained(bb["dir"], trust_remote_code=True).eval()
    with torch.no_grad():
        hidden = model(input_ids=torch.from_numpy(np.load(bb["ids"]))).last_hidden_state
    np.save(bb["out"], hidden.numpy())

if "padding" in job:  # a sequence's class logits alone and right-padded in a batch with a longer one
    pad = job["padding"]
    tok = AutoTokenizer.from_pretrained(pad["dir"])
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(pad["dir"], num_labels=3, trust_remote_code=True)
    with torch.no_grad():
        alone = model(**tok([pad["short"]], return_tensors="pt")).logits[0]
        batch = tok([pad["short"], pad["long"]], padding=True, return_tensors="pt")
        padded = model(**batch).logits[0]
    answer["padding"] = {
        "max_diff": float((alone - padded).abs().max()),
        "pads": int((batch["attention_mask"] == 0).sum()),
    }

answer["models_s"] = time.time() - t0
for name, spec in job.get("tokenize", {}).items():
    tok = AutoTokenizer.from_pretrained(spec["dir"])
    answer["tokens"][name] = tok(spec["text"], add_special_tokens=False)["input_ids"]

if "finetune" in job:
    import csv

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    ft = job["finetune"]
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(ft["dir"])
    model = AutoModelForSequenceClassification.from_pretrained(ft["dir"], num_labels=2, trust_remote_code=True)
    with open(ft["csv"]) as fh:
        rows = [{**tok(r["sequence"]), "labels": int(r["label"])} for r in csv.DictReader(fh)][: ft["rows"]]
    args = TrainingArguments(
        output_dir=ft["out"],
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        num_train_epochs=ft["epochs"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=rows, eval_dataset=rows, data_collator=DataCollatorWithPadding(tok)
    )
    answer["finetune_load_s"] = time.time() - t0
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    steps = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    answer["finetune"] = {"eval_loss_before": before, "eval_loss_after": after, "train_losses": steps}

answer["total_s"] = time.time() - t0
with open(job["answer"], "w") as fh:
    json.dump(answer, fh)
