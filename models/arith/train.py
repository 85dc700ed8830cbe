"""Trains attribfast's small arithmetic language model and exports its bundle.

Deterministic (fixed seeds, a fixed number of steps), CPU only, about 14 minutes on 2 cores:

    python models/arith/train.py --out models/arith

writes the Hugging Face model to OUT/hf (not committed), the bundle to OUT/bundle and the held-out
accuracy per operation to OUT/accuracy.json. The text world is the seed heatmap's: + - x /,
negative numbers, decimals, thousands separators, "$" amounts (with "-$" for negative ones) and
square roots "√". One character is one token, except "-$".
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

SPECIAL = ["<pad>", "<unk>", "<eos>"]
CHARACTERS = list("0123456789 +-x/=.,$√\n")
MERGED = ["-$"]
MAX_LENGTH = 64
EVAL_OPERATIONS = ("+", "-", "x")


def build_tokenizer():
    """Character-level WordLevel tokenizer in the Hugging Face tokenizers format ("-$" is one token)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(SPECIAL + CHARACTERS + MERGED)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_tokens(MERGED)
    return tokenizer


def group_thousands(digits: str) -> str:
    head = len(digits) % 3 or 3
    return ",".join([digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)])


def fmt(value, *, decimals: int = 0, money: bool = False, separators: bool = False) -> str:
    """A number as the world writes it: "-$16,000", "-0.8", "4900"."""
    negative = value < 0
    text = f"{abs(value):.{decimals}f}"
    whole, _, fraction = text.partition(".")
    if separators:
        whole = group_thousands(whole)
    body = whole + ("." + fraction if fraction else "")
    if money:
        return ("-$" if negative else "$") + body
    return ("-" if negative else "") + body


def small_int(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def expression(rng: random.Random, op: str | None = None) -> tuple[str, str]:
    """A random (question, answer): question ends with "= ", answer is the result text."""
    kind = op or rng.choices(["+", "-", "x", "/", "√", "dec", "money", "neg"], [4, 6, 10, 2, 1, 1, 2, 1])[0]
    if kind in ("+", "-", "x"):
        a = small_int(rng, rng.choice([1, 1, 2, 2, 2]))
        b = small_int(rng, rng.choice([1, 1, 2, 2, 2] if kind != "x" else [1, 1, 1, 2, 2]))
        c = a + b if kind == "+" else a - b if kind == "-" else a * b
        return f"{a} {kind} {b} = ", fmt(c)
    if kind == "/":
        b = rng.choice([small_int(rng, 1) or 1, small_int(rng, 2), 100, 10])
        c = small_int(rng, rng.choice([1, 2]))
        return f"{fmt(b * c)} / {b} = ", fmt(c)
    if kind == "√":
        root = rng.choice([small_int(rng, 1), small_int(rng, 2)])
        if rng.random() < 0.3:
            tenths = rng.randint(1, 9)
            return f"√{fmt(tenths * tenths / 100, decimals=2)} = ", fmt(tenths / 10, decimals=1)
        return f"√{root * root} = ", str(root)
    if kind == "dec":
        a, b = rng.randint(0, 99) / 10, rng.randint(0, 99) / 10
        op = rng.choice("+-")
        c = a + b if op == "+" else a - b
        return f"{fmt(a, decimals=1)} {op} {fmt(b, decimals=1)} = ", fmt(round(c, 1), decimals=1)
    if kind == "money":
        a, b = rng.randint(1, 40) * 100, rng.randint(1, 40) * 100
        op = rng.choice("+-")
        c = a + b if op == "+" else a - b
        return (
            f"{fmt(a, money=True, separators=True)} {op} {fmt(b, money=True, separators=True)} = ",
            fmt(c, money=True, separators=True),
        )
    a, b = -small_int(rng, rng.choice([1, 2])), small_int(rng, rng.choice([1, 2]))
    op = rng.choice("+-")
    c = a + b if op == "+" else a - b
    return f"{a} {op} {b} = ", fmt(c)


def document(rng: random.Random, tokenizer) -> tuple[list[int], list[float]]:
    """Expressions, one per line, up to MAX_LENGTH tokens; loss weights favour the answers."""
    ids, weights = [], []
    while True:
        question, answer = expression(rng)
        q = tokenizer.encode(question).ids
        a = tokenizer.encode(answer + "\n").ids
        if len(ids) + len(q) + len(a) > MAX_LENGTH:
            break
        ids += q + a
        # Operands are random: predicting them teaches nothing, but a little weight keeps the
        # model a language model of the whole text, which the attribution scores rely on.
        weights += [0.1] * len(q) + [1.0] * len(a)
    pad = SPECIAL.index("<pad>")
    weights += [0.0] * (MAX_LENGTH - len(ids))
    ids += [pad] * (MAX_LENGTH - len(ids))
    return ids, weights


def held_out(seed: int = 2024, per_operation: int = 100) -> list[dict]:
    """The fixed evaluation set: 1-2 digit + - x, and each other kind of expression."""
    rng = random.Random(seed)
    items = []
    for op in (*EVAL_OPERATIONS, "/", "√", "dec", "money", "neg"):
        for _ in range(per_operation):
            question, answer = expression(rng, op)
            items.append({"operation": op, "question": question, "answer": answer})
    return items


def make_model(vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=MAX_LENGTH,
        n_embd=128,
        n_layer=3,
        n_head=4,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def greedy_answer(next_logits, question_ids: list[int], tokenizer, limit: int = 12) -> str:
    """Generates until a newline; next_logits(ids) returns the logits after the last id."""
    newline = tokenizer.token_to_id("\n")
    ids = list(question_ids)
    out = []
    for _ in range(limit):
        token = int(next_logits(ids).argmax())
        if token == newline:
            break
        out.append(token)
        ids.append(token)
    return tokenizer.decode(out)


def accuracy(next_logits, tokenizer, items: list[dict]) -> dict:
    correct: dict[str, list[int]] = {}
    for item in items:
        got = greedy_answer(next_logits, tokenizer.encode(item["question"]).ids, tokenizer)
        correct.setdefault(item["operation"], []).append(int(got == item["answer"]))
    return {op: round(sum(v) / len(v), 4) for op, v in correct.items()}


def train(out: Path, steps: int, minutes: float, batch_size: int, seed: int, export_bundle: bool) -> dict:
    import torch
    from transformers import PreTrainedTokenizerFast

    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    tokenizer = build_tokenizer()
    vocab_size = tokenizer.get_vocab_size()
    model = make_model(vocab_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    rng = random.Random(seed)
    started = time.time()
    model.train()
    step = 0
    for step in range(steps):
        batch = [document(rng, tokenizer) for _ in range(batch_size)]
        ids = torch.tensor([b[0] for b in batch])
        weights = torch.tensor([b[1] for b in batch])[:, 1:]
        logits = model(ids).logits[:, :-1]
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab_size), ids[:, 1:].reshape(-1), reduction="none"
        ).reshape(weights.shape)
        loss = (losses * weights).sum() / weights.sum()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - started:.0f} s)", flush=True)
        if time.time() - started > minutes * 60:
            print(f"time budget reached at step {step}", flush=True)
            break
    model.eval()

    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    hf_dir = out / "hf"
    model.save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)

    def next_logits(ids):
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0, -1].numpy()

    scores = accuracy(next_logits, tokenizer, held_out())
    report = {
        "steps": step + 1,
        "seconds": round(time.time() - started, 1),
        "batch_size": batch_size,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "held_out_exact_match": scores,
    }
    print(json.dumps(report, indent=2))
    (out / "accuracy.json").write_text(json.dumps(report, indent=2) + "\n")
    if export_bundle:
        import attribfast

        attribfast.export_model(hf_dir, task="causal-lm", out_dir=out / "bundle", overwrite=True, progress=print)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=15.0, help="safety cap: stop training after this long")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-export", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    train(args.out, args.steps, args.minutes, args.batch_size, args.seed, not args.no_export)


if __name__ == "__main__":
    main()
