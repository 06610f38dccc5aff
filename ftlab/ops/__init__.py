"""Native kernels called through XLA FFI: oneDNN convolutions (`conv`), built by `build`."""
