/* HEAPTRAIL_* environment options. Parsed once, before anything is recorded,
 * without allocating: this runs inside the first malloc call's setup. */
#include <string.h>
#include <unistd.h>

#include "internal.h"

char *htr_str_append(char *dst, char *dst_end, const char *s)
{
	while (*s != '\0' && dst + 1 < dst_end)
		*dst++ = *s++;
	if (dst < dst_end)
		*dst = '\0';
	return dst;
}

char *htr_str_append_u64(char *dst, char *dst_end, uint64_t v)
{
	char digits[24];
	int n = 0;
	do {
		digits[n++] = (char)('0' + v % 10u);
		v /= 10u;
	} while (v != 0);
	char tmp[24];
	for (int i = 0; i < n; i++)
		tmp[i] = digits[n - 1 - i];
	tmp[n] = '\0';
	return htr_str_append(dst, dst_end, tmp);
}

void htr_warn_stderr(void *ctx, const char *line)
{
	(void)ctx;
	char buf[640];
	char *end = buf + sizeof(buf) - 1; /* room for the newline */
	char *p = htr_str_append(buf, end, "heaptrail: ");
	p = htr_str_append(p, end, line);
	*p++ = '\n';
	ssize_t r = write(STDERR_FILENO, buf, (size_t)(p - buf));
	(void)r; /* nothing sensible to do when stderr is gone */
}

/* Strict decimal: digits only, no sign, no overflow past 10^9. */
static bool parse_uint(const char *s, unsigned *out)
{
	unsigned v = 0;
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > 100000000u)
			return false;
		v = v * 10u + (unsigned)(*s - '0');
	}
	*out = v;
	return true;
}

static void complain(htr_warn_fn warn, void *ctx, const char *name, const char *value,
		     const char *what)
{
	char line[512];
	char *end = line + sizeof(line);
	char *p = htr_str_append(line, end, name);
	if (value != NULL) {
		p = htr_str_append(p, end, "=\"");
		p = htr_str_append(p, end, value);
		p = htr_str_append(p, end, "\"");
	}
	p = htr_str_append(p, end, ": ");
	htr_str_append(p, end, what);
	if (warn != NULL)
		warn(ctx, line);
}

/* complain() for a number out of range: "<rule> (using <fallback>)". */
static void complain_using(htr_warn_fn warn, void *ctx, const char *name, const char *value,
			   const char *rule, uint64_t fallback)
{
	char why[128];
	char *end = why + sizeof(why);
	char *p = htr_str_append(why, end, rule);
	p = htr_str_append(p, end, " (using ");
	p = htr_str_append_u64(p, end, fallback);
	htr_str_append(p, end, ")");
	complain(warn, ctx, name, value, why);
}

int htr_options_parse(char *const *envp, struct htr_options *out, htr_warn_fn warn, void *ctx)
{
	static const char prefix[] = "HEAPTRAIL_";
	int warnings = 0;

	out->output[0] = '.';
	out->output[1] = '\0';
	out->depth = HTR_DEFAULT_DEPTH;
	/* Follows HEAPTRAIL_DEPTH, wherever that appears, unless set itself. */
	bool free_depth_set = false;
	out->free_depth = HTR_DEFAULT_DEPTH;
	out->chunk_kb = HTR_DEFAULT_CHUNK_KB;
	out->on_error = HTR_ON_ERROR_CONTINUE;
	if (envp == NULL)
		return 0;

	for (char *const *e = envp; *e != NULL; e++) {
		const char *entry = *e;
		if (strncmp(entry, prefix, sizeof(prefix) - 1) != 0)
			continue;
		const char *eq = strchr(entry, '=');
		if (eq == NULL)
			continue;
		char name[128];
		size_t name_len = (size_t)(eq - entry);
		if (name_len >= sizeof(name))
			name_len = sizeof(name) - 1;
		memcpy(name, entry, name_len);
		name[name_len] = '\0';
		const char *value = eq + 1;
		unsigned n;

		if (strcmp(name, "HEAPTRAIL_OUTPUT") == 0) {
			if (value[0] == '\0' || strlen(value) >= sizeof(out->output) - 64) {
				complain(warn, ctx, name, value,
					 "must name a directory (using the current directory)");
				warnings++;
			} else {
				memcpy(out->output, value, strlen(value) + 1);
			}
		} else if (strcmp(name, "HEAPTRAIL_DEPTH") == 0) {
			if (parse_uint(value, &n) && n >= 1 && n <= HTR_MAX_DEPTH) {
				out->depth = n;
			} else {
				complain_using(warn, ctx, name, value, "must be an integer from 1 to 256",
					       HTR_DEFAULT_DEPTH);
				warnings++;
			}
		} else if (strcmp(name, "HEAPTRAIL_FREE_DEPTH") == 0) {
			if (parse_uint(value, &n) && n <= HTR_MAX_DEPTH) {
				out->free_depth = n;
				free_depth_set = true;
			} else {
				complain(warn, ctx, name, value,
					 "must be an integer from 0 to 256 (using HEAPTRAIL_DEPTH)");
				warnings++;
			}
		} else if (strcmp(name, "HEAPTRAIL_ON_ERROR") == 0) {
			if (strcmp(value, "continue") == 0) {
				out->on_error = HTR_ON_ERROR_CONTINUE;
			} else if (strcmp(value, "abort") == 0) {
				out->on_error = HTR_ON_ERROR_ABORT;
			} else {
				complain(warn, ctx, name, value,
					 "must be \"continue\" or \"abort\" (using continue)");
				warnings++;
			}
		} else if (strcmp(name, "HEAPTRAIL_CHUNK_KB") == 0) {
			if (parse_uint(value, &n) && n >= HTR_MIN_CHUNK_KB && n <= HTR_MAX_CHUNK_KB &&
			    n % 4u == 0) {
				out->chunk_kb = n;
			} else {
				complain_using(warn, ctx, name, value,
					       "must be a multiple of 4 from 16 to 65536", HTR_DEFAULT_CHUNK_KB);
				warnings++;
			}
		} else {
			complain(warn, ctx, name, NULL,
				 "unknown variable, ignored (known: HEAPTRAIL_OUTPUT, HEAPTRAIL_DEPTH, "
				 "HEAPTRAIL_FREE_DEPTH, HEAPTRAIL_ON_ERROR, HEAPTRAIL_CHUNK_KB)");
			warnings++;
		}
	}
	if (!free_depth_set)
		out->free_depth = out->depth;
	return warnings;
}
