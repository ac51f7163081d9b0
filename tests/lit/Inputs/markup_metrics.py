"""markup_metrics.py OUT.jsonl N_LABELS: a metrics log (as kiln train
--report writes it) whose every piece of text is markup: the model path,
the checkpoint, the labels, recipe values and the end message, for a test
that the page shows them as text. The run starts resumed at step 4 and
ends with an error."""
import json
import sys

out, n = sys.argv[1], int(sys.argv[2])
labels = [f"<script>alert({i})</script>&amp;" for i in range(n)]
mark = "<img src=x onerror=alert(1)>"
records = [dict(kind="run", format="kiln-metrics-1", model=mark + ".kiln", resumed_from=mark + ".ckpt",
                start_step=4, start_epoch=1, start_batch=0, epochs=2, batches_per_epoch=4, total_steps=8,
                train_examples=64, valid_examples=n * 2, parameters=10, labels=labels,
                recipe={"lr": "0.001", "note": '"quoted" <b>bold</b>'}, started=mark)]
for step in range(5, 9):
    records.append(dict(kind="step", step=step, epoch=2, batch=step - 4, loss=1.0 / step, lr=0.001,
                        examples=16, tokens=100))
confusion = [[2 if t == p else 0 for p in range(n)] for t in range(n)]
confusion[0][1] = 1
records.append(dict(kind="epoch", epoch=2, step=8, steps=4, examples=64, tokens=400, seconds=0.5,
                    tokens_per_s=800.0, train_loss=0.2, train_accuracy=0.9, partial=False, best=False, lr_scale=1,
                    valid_loss=0.3, accuracy=0.95, macro_f1=0.94, labels=labels, confusion=confusion))
records.append(dict(kind="end", step=8, epoch=2, status="error", message=mark + " diverged"))
with open(out, "w") as f:
    for r in records:
        f.write(json.dumps(r) + "\n")
