/* fork: the parent allocates 6001 before and 6003 after; the child 6002.
 * With an argument "exec", the child execs this program with "image",
 * which allocates 6004. "badexec": a failing exec, then 6005.
 * "listforms l|lp|le": execl, execlp or execle of a shell that prints its
 * $0, $1 and $HTR_FORM (execle passes HTR_FORM=given as the whole
 * environment), so the recorder's list-form wrappers are seen to pass
 * arguments and environment through exactly. */
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
	if (argc > 2 && strcmp(argv[1], "listforms") == 0) {
		static const char script[] = "echo \"$0|$1|$HTR_FORM\"";
		sink = malloc(6006);
		free(sink);
		if (strcmp(argv[2], "l") == 0) {
			execl("/bin/sh", "sh", "-c", script, "zero", "one", (char *)NULL);
		} else if (strcmp(argv[2], "lp") == 0) {
			execlp("sh", "sh", "-c", script, "zero", "one", (char *)NULL);
		} else if (strcmp(argv[2], "le") == 0) {
			char *const envp[] = {"HTR_FORM=given", NULL};
			execle("/bin/sh", "sh", "-c", script, "zero", "one", (char *)NULL, envp);
		}
		return 98;
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
