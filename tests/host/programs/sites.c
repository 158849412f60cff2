/* The located API: each call's line is checked by the test, which finds it
 * by the SITE-n comment on the same line. */
#include <stdio.h>
#include <string.h>

#include "heaptrail.h"

int main(void)
{
	htr_mark("begin");
	void *a = HTR_MALLOC(2001); /* SITE-1 */
	void *b = HTR_CALLOC(2, 1001); /* SITE-2 */
	b = HTR_REALLOC(b, 2003); /* SITE-3 */
	char *s = HTR_STRDUP("seven"); /* SITE-4 */
	void *al = HTR_ALIGNED_ALLOC(256, 2048); /* SITE-5 */
	void *forever = HTR_PERSISTENT(2006); /* SITE-6 */
	HTR_FREE(a); /* SITE-7 */
	HTR_FREE(b); /* SITE-8 */
	HTR_FREE(s); /* SITE-9 */
	HTR_FREE(al); /* SITE-10 */
	htr_mark("end");
	struct htr_heap_stats st;
	if (htr_get_heap_stats(&st) != 0)
		return 20;
	/* the persistent block is the only one of ours still live */
	if (st.alloc_count < 6 || st.free_count < 4 || st.misuse_count != 0)
		return 21;
	(void)forever;
	printf("stats ok\n");
	return 0;
}
