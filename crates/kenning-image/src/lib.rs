//! Image decoding with limits, EXIF orientation, resizing, alignment warps and
//! face quality measures.

pub use image::RgbImage;
