/* Definitions the recorder's process.c and modules.c provide in the real
 * library; the units link the other parts without them (no constructor, no
 * hooks). Include from exactly one file per test executable. */
#ifndef HTR_TEST_UNIT_STUBS_H
#define HTR_TEST_UNIT_STUBS_H

#include "internal.h"

struct htr_options htr_opts;
int htr_state;
unsigned htr_test_module_scans;

void htr_modules_scan(struct htr_writer *w, bool force)
{
	(void)w;
	(void)force;
	htr_test_module_scans++;
}

#endif
