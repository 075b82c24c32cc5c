//! confu-train
