"""Trainer callbacks against the real libraries: Hugging Face transformers' Trainer
(ckstore.hf) and PyTorch Lightning (ckstore.lightning). Each skips when its library is not
installed (Tools/test.sh does not install them: they are large)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


class Regressor(torch.nn.Module):
    """A tiny model in the shape the HF Trainer expects (forward returns a dict with "loss")."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, x, labels=None):
        out = self.lin(x).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}


class Rows(torch.utils.data.Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(-1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def snapshots(ckstore, run):
    return json.loads(ckstore("ls", "--run", run, "--json").stdout)["snapshots"]


def hf_trainer(tmp_path, callback, **args):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    torch.manual_seed(0)
    model = Regressor()
    training_args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4, logging_steps=1,
        report_to=[], use_cpu=True, disable_tqdm=True, learning_rate=0.05, **args)
    return model, transformers.Trainer(model=model, args=training_args, train_dataset=Rows(), callbacks=[callback])


def test_hf_callback_every_n_steps(ckstore_bin, store, ckstore, tmp_path):
    pytest.importorskip("transformers")
    from ckstore.hf import CKStoreTrainerCallback

    model, trainer = hf_trainer(tmp_path, CKStoreTrainerCallback("hf", every=2, store=store, binary=ckstore_bin),
                                save_strategy="no")
    trainer.train()
    snaps = snapshots(ckstore, "hf")
    assert [s["step"] for s in snaps] == [2, 4, 6]
    assert all(any(m["name"] == "loss" for m in s["metrics"]) for s in snaps)
    import ckstore as ck
    got = ck.load("hf@6", store=store, binary=ckstore_bin, framework="torch")
    for name, value in model.state_dict().items():
        assert torch.equal(got[name], value), name


def test_hf_callback_on_save(ckstore_bin, store, ckstore, tmp_path):
    pytest.importorskip("transformers")
    from ckstore.hf import CKStoreTrainerCallback

    _, trainer = hf_trainer(tmp_path, CKStoreTrainerCallback("hf-save", store=store, binary=ckstore_bin),
                            save_strategy="steps", save_steps=3)
    trainer.train()
    assert [s["step"] for s in snapshots(ckstore, "hf-save")] == [3, 6]


def test_lightning_callback(ckstore_bin, store, ckstore):
    pl = pytest.importorskip("lightning.pytorch")
    from ckstore.lightning import CKStoreLightningCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = Regressor()

        def training_step(self, batch, batch_idx):
            return self.model(batch["x"], batch["labels"])["loss"]

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    module = Module()
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[CKStoreLightningCallback("pl", every=2, store=store, binary=ckstore_bin)])
    trainer.fit(module, torch.utils.data.DataLoader(Rows(), batch_size=4))
    snaps = snapshots(ckstore, "pl")
    assert [s["step"] for s in snaps] == [2, 4, 6]
    assert all(any(m["name"] == "loss" for m in s["metrics"]) for s in snaps)
    import ckstore as ck
    got = ck.load("pl@6", store=store, binary=ckstore_bin, framework="torch")
    for name, value in module.state_dict().items():
        assert torch.equal(got[name], value), name


def test_hf_callback_pushes_the_checkpoint_directory(ckstore_bin, store, ckstore, tmp_path):
    pytest.importorskip("transformers")
    import ckstore as ck
    from ckstore.hf import CKStoreTrainerCallback

    if not ck.put_supports_dirs(ckstore_bin):
        pytest.skip("this ckstore's `put` takes no directory yet (issue 11)")
    _, trainer = hf_trainer(tmp_path, CKStoreTrainerCallback("hf-dir", save_dir=True, store=store, binary=ckstore_bin),
                            save_strategy="steps", save_steps=3)
    trainer.train()
    assert [s["step"] for s in snapshots(ckstore, "hf-dir")] == [3, 6]
    out = tmp_path / "restored"
    ckstore("get", "hf-dir@6", "-o", str(out))
    saved = tmp_path / "out" / "checkpoint-6"
    names = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert names and names == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for name in names:
        assert (out / name).read_bytes() == (saved / name).read_bytes(), name
