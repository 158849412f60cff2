/* The compact binary board encoding: record layout shared by the encoder
 * (enc_bin.c, on the target) and the decoder (wire_decode.c, on the host).
 * docs/board-wire.md is the specification; keep the two in step.
 *
 * A frame is one record, COBS-encoded, followed by a 0x00 delimiter.
 * A decoded record is: byte 0 = type << 5 | (seq & 31), body, CRC-8. */
#ifndef HTR_BOARD_WIRE_H
#define HTR_BOARD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define HTR_WIRE_VERSION 2u
#define HTR_WIRE_SEQ_BITS 5u
#define HTR_WIRE_SEQ_MASK 31u
/* Largest decoded record: a SITE with a file name of HTR_WIRE_FILE_MAX. */
#define HTR_WIRE_FILE_MAX 160u
#define HTR_WIRE_NAME_MAX 48u
#define HTR_WIRE_RECORD_MAX 200u
/* COBS adds one byte per 254, plus the delimiter. */
#define HTR_WIRE_FRAME_MAX (HTR_WIRE_RECORD_MAX + HTR_WIRE_RECORD_MAX / 254u + 2u)

enum htr_wire_type {
	HTR_WIRE_ALLOC = 1,       /* site, size, ptr: malloc */
	HTR_WIRE_FREE = 2,        /* site, ptr */
	HTR_WIRE_REALLOC = 3,     /* site, size, old ptr, new ptr (relative to old) */
	HTR_WIRE_CALLOC = 4,      /* site, size (count x size), ptr */
	HTR_WIRE_ALLOC_AGAIN = 5, /* size, ptr: an ALLOC at the site of the latest ALLOC */
	HTR_WIRE_FREE_AGAIN = 6,  /* ptr: a FREE at the site of the latest FREE */
	HTR_WIRE_EXT = 7,         /* byte 1: enum htr_wire_ext */
};

/* The *_AGAIN records name no site: theirs is that of the latest record of
 * their kind (ALLOC or ALLOC_AGAIN; FREE or FREE_AGAIN) among the
 * HTR_WIRE_RECENT records before them. The encoder only sends one when that
 * record exists and none of the records in between was lost at the
 * transport; a decoder that missed one of them gives the event no site.
 * After HTR_WIRE_AGAIN_RUN of a kind in a row the site is named again, so
 * that a decoder which lost it knows it again soon. */
#define HTR_WIRE_RECENT 4u
#define HTR_WIRE_AGAIN_RUN 8u

enum htr_wire_ext {
	HTR_WIRE_X_INIT = 1,    /* full seq, base, size, version */
	HTR_WIRE_X_MARK = 2,    /* name bytes to the CRC */
	HTR_WIRE_X_DROP = 3,    /* count */
	HTR_WIRE_X_MISUSE = 4,  /* kind (1 double, 2 invalid), site, raw address */
	HTR_WIRE_X_ALLOC = 5,   /* call, site, size, ptr, alignment: aligned, strdup */
	HTR_WIRE_X_REGION = 6,  /* base, size: a region added after INIT */
	HTR_WIRE_X_GUARD = 7,   /* site, raw address: the guard word was overwritten */
	HTR_WIRE_X_SITE = 8,    /* id, line, pc, file bytes to the CRC */
	HTR_WIRE_X_CHECK = 9,   /* full seq, base, heap, live, bytes, free, largest, fblocks,
				 * minfree, peak, allocs, frees, failed, misuse, ticks */
	HTR_WIRE_X_PERSIST = 10, /* site, size, ptr */
};

/* Pointers into the heap travel as zigzag((ptr - base) / 8) + 1; 0 is NULL.
 * Misused addresses (any value) travel raw. */
size_t htr_wire_put_varint(uint8_t *out, uint64_t v);
/* Reads a varint from [*pos, end). 0 on success, -1 when cut or too long. */
int htr_wire_get_varint(const uint8_t *buf, size_t end, size_t *pos, uint64_t *v);
uint8_t htr_wire_crc8(const uint8_t *buf, size_t len);
/* Encodes len bytes into out (room for len + len / 254 + 1), no delimiter.
 * Returns the encoded length. */
size_t htr_wire_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
/* Decodes in place-safe from in to out (room for len). Returns the decoded
 * length, or -1 when the frame is not valid COBS. */
long htr_wire_cobs_decode(const uint8_t *in, size_t len, uint8_t *out);

static inline uint64_t htr_wire_zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}
static inline int64_t htr_wire_unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1u);
}

#endif /* HTR_BOARD_WIRE_H */
