//! Real control plane for tests (filled in by the control-plane issue).
