/* Varints, CRC-8 and COBS: the byte-level pieces of the binary encoding,
 * used by both the target encoder and the host decoder. */
#include "wire.h"

size_t htr_wire_put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80u) {
		out[n++] = (uint8_t)(v | 0x80u);
		v >>= 7;
	}
	out[n++] = (uint8_t)v;
	return n;
}

int htr_wire_get_varint(const uint8_t *buf, size_t end, size_t *pos, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64u; shift += 7u) {
		if (*pos >= end)
			return -1;
		uint8_t b = buf[(*pos)++];
		r |= (uint64_t)(b & 0x7Fu) << shift;
		if ((b & 0x80u) == 0) {
			/* A redundant trailing zero group is not canonical: reject,
			 * so noise has fewer ways to look like a record. */
			if (b == 0 && shift != 0)
				return -1;
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* CRC-8, polynomial 0x07, a nibble at a time: 16 bytes of table instead of
 * 256 keeps flash small. */
uint8_t htr_wire_crc8(const uint8_t *buf, size_t len)
{
	static const uint8_t table[16] = {
		0x00, 0x07, 0x0E, 0x09, 0x1C, 0x1B, 0x12, 0x15,
		0x38, 0x3F, 0x36, 0x31, 0x24, 0x23, 0x2A, 0x2D,
	};
	uint8_t crc = 0;
	for (size_t i = 0; i < len; i++) {
		crc ^= buf[i];
		crc = (uint8_t)((crc << 4) ^ table[crc >> 4]);
		crc = (uint8_t)((crc << 4) ^ table[crc >> 4]);
	}
	return crc;
}

size_t htr_wire_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
	size_t code_at = 0, o = 1;
	uint8_t code = 1;
	for (size_t i = 0; i < len; i++) {
		if (in[i] != 0) {
			out[o++] = in[i];
			code++;
		}
		if (in[i] == 0 || code == 0xFFu) {
			out[code_at] = code;
			code_at = o++;
			code = 1;
		}
	}
	out[code_at] = code;
	return o;
}

long htr_wire_cobs_decode(const uint8_t *in, size_t len, uint8_t *out)
{
	size_t i = 0, o = 0;
	while (i < len) {
		uint8_t code = in[i++];
		if (code == 0 || i + code - 1u > len)
			return -1;
		for (uint8_t k = 1; k < code; k++) {
			if (in[i] == 0)
				return -1;
			out[o++] = in[i++];
		}
		if (code != 0xFFu && i < len)
			out[o++] = 0;
	}
	return (long)o;
}
