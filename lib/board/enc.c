/* What both encoders share: numbering, sending, drop accounting. */
#include <string.h>

#include "enc.h"

void htr_enc_init(struct htr_enc *e, const struct htr_enc_ops *ops, const struct htr_transport *tp)
{
	memset(e, 0, sizeof(*e));
	e->ops = ops;
	e->tp = tp;
}

/* Pending drops are reported here, before the next record takes its
 * number, so numbers go out in order: the drop record is numbered (and
 * sent) ahead of the record that follows the loss. */
uint32_t htr_enc_next_seq(struct htr_enc *e)
{
	if (e->pending_drops != 0 && !e->in_drop) {
		uint32_t count = e->pending_drops;
		e->pending_drops = 0;
		e->in_drop = 1;
		/* A failed drop record re-adds count (its own loss is counted by
		 * the send). */
		if (e->ops->drop(e, count) != 0)
			e->pending_drops += count;
		e->in_drop = 0;
	}
	return e->seq++;
}

void htr_enc_lost(struct htr_enc *e)
{
	/* A site named by an earlier record that was lost can not be
	 * referred to. */
	memset(e->recent_kind, 0, sizeof(e->recent_kind));
	e->pending_drops++;
	e->total_drops++;
}

static int raw_send(struct htr_enc *e, const uint8_t *buf, size_t len)
{
	if (e->tp->write(e->tp->ctx, buf, len) != 0) {
		htr_enc_lost(e);
		return -1;
	}
	e->records++;
	e->bytes += (uint32_t)len;
	return 0;
}

int htr_enc_send(struct htr_enc *e, const uint8_t *buf, size_t len)
{
	return raw_send(e, buf, len);
}

int htr_enc_send_raw(struct htr_enc *e, const uint8_t *buf, size_t len)
{
	return raw_send(e, buf, len);
}
