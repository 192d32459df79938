#![no_main]

use kenning_image::{decode, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Any input must give an image or a typed error: no panic, no abort, no
    // unbounded allocation.
    if let Ok(img) = decode(data, &DecodeLimits::default()) {
        assert_eq!(
            img.as_raw().len(),
            img.width() as usize * img.height() as usize * 3
        );
    }
});
