/* dlopen a plugin (path in argv[1]), allocate through it, dlclose it. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 1;
	void *h = dlopen(argv[1], RTLD_NOW);
	if (h == NULL) {
		fprintf(stderr, "%s\n", dlerror());
		return 2;
	}
	void *sym = dlsym(h, "plugin_alloc");
	if (sym == NULL)
		return 3;
	void *(*fn)(void);
	memcpy(&fn, &sym, sizeof(fn));
	void *p = fn();
	free(p);
	dlclose(h);
	if (argc > 2) /* "quiet": nothing new after the unload */
		return 0;
	void *after = malloc(7008); /* after the unload */
	free(after);
	return 0;
}
