"""Small helpers with no layer of their own: plain-line progress for logs, provenance (config, code version, input
hashes of every result file), and the torchvision CPU shim."""
