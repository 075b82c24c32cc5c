//! confu-moe
