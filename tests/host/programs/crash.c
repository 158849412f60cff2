/* Allocates 1000 blocks of 777 bytes, then ends the way argv[1] says:
 * _exit, abort, segv, kill. The trace must still hold all 1000. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile blocks[1000];

int main(int argc, char **argv)
{
	for (int i = 0; i < 1000; i++)
		blocks[i] = malloc(777);
	const char *how = argc > 1 ? argv[1] : "";
	if (strcmp(how, "_exit") == 0)
		_exit(9);
	if (strcmp(how, "abort") == 0)
		abort();
	if (strcmp(how, "segv") == 0) {
		volatile int *null = NULL;
		return *null;
	}
	if (strcmp(how, "kill") == 0)
		kill(getpid(), SIGKILL);
	return 0;
}
