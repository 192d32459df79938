/*
 * libjpeg driver for kenning-image.
 *
 * libjpeg reports fatal errors through error_exit, which must not return.
 * Doing the longjmp here in C keeps it away from Rust frames: Rust calls a
 * plain function that returns a status code.  Messages are never printed.
 *
 * Input is untrusted, so two of libjpeg-turbo's hardening measures (those
 * of djpeg -strict and -maxscans) apply: a warning about corrupt data stops
 * the decode instead of being papered over, and a progressive file may not
 * have more scans than the caller allows (each scan re-reads the whole
 * coefficient buffer, so thousands of tiny scans cost minutes of CPU).
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "jpeglib.h"
#include "jerror.h"

/* The caller's message buffer holds a full libjpeg message. */
#define KN_MSG_LEN JMSG_LENGTH_MAX

struct kn_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char *message;
    int strict;
};

static void kn_error_exit(j_common_ptr cinfo) {
    struct kn_error *err = (struct kn_error *)cinfo->err;
    err->pub.format_message(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Level -1 is a warning: libjpeg has found corrupt data (a bad Huffman
 * code, extraneous bytes before a marker, a missing restart marker, an
 * inconsistent progression) and would go on with made-up coefficients.
 * Strict decoding makes it an error with libjpeg's message; otherwise it is
 * ignored, as PIL does.  Levels 0 and up are trace messages. */
static void kn_emit_message(j_common_ptr cinfo, int level) {
    struct kn_error *err = (struct kn_error *)cinfo->err;
    if (level < 0 && err->strict)
        kn_error_exit(cinfo);
}

/* Called by libjpeg as it consumes input; stops a progressive file at the
 * scan after the last one allowed. */
struct kn_progress {
    struct jpeg_progress_mgr pub;
    int max_scans;
};

static void kn_progress_monitor(j_common_ptr cinfo) {
    struct kn_progress *progress = (struct kn_progress *)cinfo->progress;
    j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;
    if (dinfo->input_scan_number > progress->max_scans) {
        struct kn_error *err = (struct kn_error *)cinfo->err;
        snprintf(err->message, KN_MSG_LEN,
                 "progressive JPEG has more than %d scans", progress->max_scans);
        longjmp(err->jump, 1);
    }
}

static void kn_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void kn_init_source(j_decompress_ptr cinfo) { (void)cinfo; }

/* The whole file is in memory, so a request for more data means the file is
 * truncated.  libjpeg's own memory source would pad with an EOI marker and
 * return a grey-filled image; a truncated upload must be an error instead. */
static boolean kn_fill_input(j_decompress_ptr cinfo) {
    ERREXIT(cinfo, JERR_INPUT_EOF);
    return FALSE;
}

static void kn_skip_input(j_decompress_ptr cinfo, long count) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (count <= 0)
        return;
    if ((size_t)count > src->bytes_in_buffer)
        ERREXIT(cinfo, JERR_INPUT_EOF);
    src->next_input_byte += count;
    src->bytes_in_buffer -= (size_t)count;
}

static void kn_term_source(j_decompress_ptr cinfo) { (void)cinfo; }

static void kn_setup(j_decompress_ptr cinfo, struct kn_error *err,
                     struct jpeg_source_mgr *src, const unsigned char *data,
                     size_t len, int strict, char *message) {
    memset(cinfo, 0, sizeof(*cinfo));
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = kn_error_exit;
    err->pub.emit_message = kn_emit_message;
    err->pub.output_message = kn_output_message;
    err->message = message;
    err->strict = strict;
    message[0] = '\0';
    memset(src, 0, sizeof(*src));
    src->init_source = kn_init_source;
    src->fill_input_buffer = kn_fill_input;
    src->skip_input_data = kn_skip_input;
    src->resync_to_restart = jpeg_resync_to_restart;
    src->term_source = kn_term_source;
    src->next_input_byte = data;
    src->bytes_in_buffer = len;
}

static int kn_is_cmyk(j_decompress_ptr cinfo) {
    return cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
}

/* Reads the header only.  *channels is 3 (RGB output) or 4 (CMYK output).
 * `strict` makes corrupt-data warnings errors.  Returns 0 on success, 1 with
 * `message` set on failure. */
int kn_jpeg_header(const unsigned char *data, size_t len, int strict,
                   unsigned *width, unsigned *height, unsigned *channels,
                   char *message) {
    struct jpeg_decompress_struct cinfo;
    struct kn_error err;
    struct jpeg_source_mgr src;
    kn_setup(&cinfo, &err, &src, data, len, strict, message);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.src = &src;
    jpeg_read_header(&cinfo, TRUE);
    *width = cinfo.image_width;
    *height = cinfo.image_height;
    *channels = kn_is_cmyk(&cinfo) ? 4 : 3;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/* Decodes into `out` (width * height * channels bytes, as reported by
 * kn_jpeg_header) with libjpeg's defaults, which are PIL's: ISLOW IDCT and
 * fancy upsampling.  `strict` makes corrupt-data warnings errors, and a file
 * with more than `max_scans` scans is refused.  Returns 0 on success, 1 with
 * `message` set on failure. */
int kn_jpeg_decode(const unsigned char *data, size_t len, int strict,
                   int max_scans, unsigned char *out, size_t out_len,
                   char *message) {
    struct jpeg_decompress_struct cinfo;
    struct kn_error err;
    struct jpeg_source_mgr src;
    struct kn_progress progress;
    size_t stride;
    kn_setup(&cinfo, &err, &src, data, len, strict, message);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.src = &src;
    memset(&progress, 0, sizeof(progress));
    progress.pub.progress_monitor = kn_progress_monitor;
    progress.max_scans = max_scans;
    cinfo.progress = &progress.pub;
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = kn_is_cmyk(&cinfo) ? JCS_CMYK : JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);
    stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
    if (stride * (size_t)cinfo.output_height != out_len) {
        snprintf(message, KN_MSG_LEN, "%s", "decoded size differs from the header");
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = out + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    /* No jpeg_finish_decompress: a file whose image data is complete but
     * lacks the EOI marker (or has trailing junk) is still accepted. */
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
