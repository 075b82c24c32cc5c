//! confu-verify
