"""The domain core: plain values in, plain values out; no HTTP, no SQL."""
