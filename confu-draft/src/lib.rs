//! confu-draft
