/* fork: the parent allocates 6001 before and 6003 after; the child 6002.
 * With an argument "exec", the child execs this program with "image",
 * which allocates 6004. "badexec": a failing exec, then 6005. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink;

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "image") == 0) {
		sink = malloc(6004);
		free(sink);
		return 5;
	}
	if (argc > 1 && strcmp(argv[1], "badexec") == 0) {
		execl("/nonexistent/heaptrail-test", "x", (char *)NULL);
		sink = malloc(6005); /* still recorded after the failed exec */
		free(sink);
		return 0;
	}
	sink = malloc(6001);
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		sink = malloc(6002);
		if (argc > 1 && strcmp(argv[1], "exec") == 0) {
			execl("/proc/self/exe", argv[0], "image", (char *)NULL);
			_exit(99);
		}
		exit(4);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return 2;
	sink = malloc(6003);
	printf("child %d exited %d\n", (int)pid, WEXITSTATUS(status));
	return 0;
}
