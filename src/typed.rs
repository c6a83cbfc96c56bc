//! Typed channels of plain-old-data values (placeholder).
