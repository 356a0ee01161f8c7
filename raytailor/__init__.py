"""raytailor: tailor pre-trained CNNs to new tasks, and search how to tailor them at scale."""

__version__ = "0.1.0"


def load_tailored(directory, *, device="cpu"):
    """Load an exported tailored model as a plain ``torch.nn.Module`` in eval mode."""
    from raytailor.export import load_tailored as _load

    return _load(directory, device=device)


def load_bank(directory, *, device="cpu"):
    """Open a task bank (``raytailor bank``): ``bank.model(task)`` serves each task from one copy
    of every tensor the tasks share."""
    from raytailor.bank import load_bank as _load

    return _load(directory, device=device)


__all__ = ["__version__", "load_bank", "load_tailored"]
