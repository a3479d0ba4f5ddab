//! The file formats of the `ember` command, as a library for its binary and the fuzz targets.

pub mod io;
