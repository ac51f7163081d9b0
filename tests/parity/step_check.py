"""The one-step comparison shared by the training parity tests: kiln's loss
and `grad.<name>` outputs of `kiln run --graph=train` against PyTorch's
loss.backward() on the same batch."""
import numpy as np
import torch


def forward(model, inputs):
    """model's logits on `inputs`: one tensor (the tokens), or a dict of the
    model's inputs by name (the names of the .kiln's forward arguments, which
    are the twin's forward arguments)."""
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def compare_step(out, model, inputs, labels):
    """Runs model forward and backward on (inputs, labels) (inputs as in
    forward()) and compares with kiln's outputs `out`. Returns (loss error,
    (worst gradient error, its parameter), the names of the parameters with a
    gradient above 1% of the largest). A gradient's error is
    max|kiln - torch| / max(max|torch|, G/100), G the largest gradient element
    of the model: the floor matters only for gradients that are zero in exact
    arithmetic and rounding noise on both sides."""
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(forward(model, inputs), labels)
    loss.backward()
    scale = max(float(np.max(np.abs(p.grad.numpy()))) for p in model.parameters())
    live = {name for name, p in model.named_parameters() if np.max(np.abs(p.grad.numpy())) >= scale / 100}

    def grad_err(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), scale / 100))

    worst = max((grad_err(out["grad." + name], p.grad.numpy()), name) for name, p in model.named_parameters())
    loss_err = abs(float(out["loss"]) - loss.item()) / max(1.0, abs(loss.item()))
    return loss_err, worst, live


def report_step(label, loss_err, worst, count, tol):
    """Prints the one-step comparison's line; returns whether it passed."""
    ok = worst[0] <= tol and loss_err <= tol
    print(f"{label}: loss rel err {loss_err:.1e}, worst gradient rel err {worst[0]:.1e} ({worst[1]}), "
          f"{count} gradients (tol {tol:g}) {'ok' if ok else 'FAIL'}")
    return ok


def chained_steps(model, opt, batches, run_kiln, save_state):
    """Trains model with opt on `batches` of (inputs, labels) (inputs as in
    forward(); step k on batch k, from 1) while kiln runs the same steps:
    run_kiln(inputs, labels, step) returns the outputs of one `kiln run
    --graph=train`, and save_state(outputs) makes its updated parameters and
    optimizer state the next run's weights. Returns ((worst loss error, its
    step), the last PyTorch loss)."""
    worst = (0.0, 0)
    loss = None
    for step, (inputs, labels) in enumerate(batches, start=1):
        out = run_kiln(inputs, labels, step)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(model, inputs), labels)
        loss.backward()
        opt.step()
        worst = max(worst, (abs(float(out["loss"]) - loss.item()) / max(1.0, abs(loss.item())), step))
        save_state({k: v for k, v in out.items() if not k.startswith("grad.") and k not in ("loss", "logits")})
    return worst, loss.item()
