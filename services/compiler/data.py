"""torch.utils.data's TensorDataset and DataLoader over tensors the program holds (d2l's `load_array`, a tabular
training script's loop): each batch is the rows torch's sampler picks, stacked as torch's default collate stacks them,
and iterating draws from torch's generator as torch's iterator does, so what is drawn after it (a dropout mask) is
torch's too: a base seed when the iterator is made, and with `shuffle=True` the RandomSampler's seed at the first
batch, whose own generator then gives the permutation (torch.randperm)."""

from __future__ import annotations

import ast
from typing import Any

from services.compiler.expressions import ExpressionCompiler, _kind
from services.compiler.values import Dataset, Epoch, Loader, T
from services.ir import Event, Leaf

LOADER_ARGS = ("dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "num_workers", "collate_fn", "pin_memory",
               "drop_last", "timeout", "worker_init_fn", "multiprocessing_context", "generator")
"""DataLoader's parameters in torch's order."""
ACCEPTED = {"dataset", "batch_size", "shuffle", "num_workers", "pin_memory", "drop_last", "timeout", "prefetch_factor",
            "pin_memory_device"}
"""Those traced (workers and pinning change no numbers: a worker's batches are the same rows)."""
PATHS = {"torch.utils.data.TensorDataset", "torch.utils.data.DataLoader", "torch.utils.data.dataset.TensorDataset",
         "torch.utils.data.dataloader.DataLoader"}


class DataLoading(ExpressionCompiler):
    """TensorDataset / DataLoader objects, their iterators and batches."""

    stream: Any  # (the program's default random stream: CallStatements)

    def data_object(self, path: str, node: ast.Call) -> Dataset | Loader:
        """TensorDataset(X, y) / DataLoader(dataset, batch_size, shuffle, ...)."""
        if path.endswith("TensorDataset"):
            if node.keywords or not node.args:
                raise self.err(node, "TensorDataset takes tensors (TensorDataset(X, y))")
            tensors = [self.expr(a) for a in node.args]
            if not all(isinstance(t, T) and self.shape(t) for t in tensors):
                raise self.err(node, "TensorDataset takes tensors with a first dim (the samples), "
                                     f"not {', '.join(_kind(t) for t in tensors if not isinstance(t, T))}")
            sizes = {self.shape(t)[0] for t in tensors}  # type: ignore[arg-type]
            if len(sizes) != 1:
                raise self.err(node, f"Size mismatch between tensors: their first dims are {sorted(sizes)}")
            return Dataset(tuple(tensors), sizes.pop())  # type: ignore[arg-type]
        given = dict(zip(LOADER_ARGS, node.args, strict=False)) | {k.arg: k.value for k in node.keywords if k.arg}
        if len(node.args) > len(LOADER_ARGS) or "dataset" not in given:
            raise self.err(node, "DataLoader takes (dataset, batch_size=1, shuffle=False, ...)")
        vals = {k: self.expr(v) for k, v in given.items()}
        other = [k for k, v in vals.items() if k not in ACCEPTED and v is not None and v is not False]
        if other:
            raise self.err(node, f"DataLoader({', '.join(other)}=...) is not traced: gradtrace traces a TensorDataset's "
                                 "batches in order or shuffled by torch's RandomSampler (batch_size, shuffle, drop_last)")
        data = vals["dataset"]
        if not isinstance(data, Dataset):
            raise self.err(node, f"DataLoader over {_kind(data)} is not traced: gradtrace traces a TensorDataset of the "
                                 "program's tensors (a Dataset class of your own reads files or computes in Python)")
        size = vals.get("batch_size", 1)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise self.err(node, f"DataLoader: batch_size should be a positive integer, got {size!r}")
        shuffle = bool(vals.get("shuffle", False))
        if shuffle and data.size == 0:
            raise self.err(node, "num_samples should be a positive integer value, but got num_samples=0")
        workers = vals.get("num_workers", 0)
        return Loader(data, size, shuffle, bool(vals.get("drop_last", False)), workers if isinstance(workers, int) else 0)

    def epoch(self, loader: Loader, node: ast.AST) -> Epoch:
        """iter(loader): torch's _BaseDataLoaderIter draws its base seed (an int64 from the default generator) now."""
        self.stream.events.append(Event("loader_seed", None))
        epoch = Epoch(loader)
        if loader.workers > 0 and loader.shuffle:  # workers are given indices now: the sampler's seed is drawn now
            self.draw_order(epoch, node)
        return epoch

    def draw_order(self, epoch: Epoch, node: ast.AST) -> None:
        """The RandomSampler's permutation, a leaf drawn here (its seed from torch's generator)."""
        n = epoch.loader.dataset.size
        name = self.fresh("sampler.order")
        self.builder.add_leaf(Leaf(name, (n,), "int64", False, init="torch's RandomSampler order (randperm of a "
                                   "generator seeded from torch's)", expr=f"line {getattr(node, 'lineno', '?')}"),
                              ("program",))
        self.stream.events.append(Event("sampler_order", name, {"n": n}))
        epoch.order = T(name)

    def next_batch(self, epoch: Epoch, node: ast.AST, names: list[str] | None = None) -> list[T]:
        """The epoch's next batch (StopIteration past the last: refused as the program would end there)."""
        if len(epoch) <= 0:
            raise self.err(node, "the DataLoader's iterator is exhausted (StopIteration)")
        k, epoch.position = epoch.position, epoch.position + 1
        return self.batch(epoch, k, node, names)

    def batch(self, epoch: Epoch, k: int, node: ast.AST, names: list[str] | None = None) -> list[T]:
        """Batch k: the rows the sampler gives for it, one tensor per dataset tensor (torch's default collate makes a
        list), each a new tensor (advanced indexing), as torch.stack of the rows is."""
        loader = epoch.loader
        n, b = loader.dataset.size, loader.batch_size
        start, stop = k * b, min(n, k * b + b)
        if loader.shuffle and epoch.order is None:  # the RandomSampler's seed, drawn at its first batch
            self.draw_order(epoch, node)
        targets = names if names is not None and len(names) == len(loader.dataset.tensors) else [None] * len(loader.dataset.tensors)
        out = []
        for t, target in zip(loader.dataset.tensors, targets, strict=True):
            if epoch.order is not None:
                rows = self.emit("getitem", [epoch.order], {"index": [{"slice": [start, stop, None]}]}, node, name=self.temp())  # type: ignore[arg-type]
                out.append(self.emit("getitem", [t, rows], {"index": [{"tensor": 0}]}, node, name=target or self.temp()))  # type: ignore[arg-type]
            else:
                out.append(self.emit("getitem", [t], {"index": [list(range(start, stop))]}, node, name=target or self.temp()))  # type: ignore[arg-type]
        return out
