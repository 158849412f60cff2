/* fork under pressure. "threads": four threads allocate while the main
 * thread forks 50 times; every child allocates 9100 and exits 0. "signal":
 * a timer's handler forks (as glibc's tst-mallocfork does) while the
 * program allocates and frees in a loop; it must never hang. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t forks, stop;
static void *volatile sink;

static void *churn(void *arg)
{
	(void)arg;
	while (!stop) {
		void *p = malloc(9000);
		free(p);
		usleep(50); /* keeps the parent's trace small enough to check */
	}
	return NULL;
}

static void on_alarm(int sig)
{
	(void)sig;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	if (pid > 0) {
		int status;
		waitpid(pid, &status, 0);
		forks++;
	}
	if (forks >= 100) {
		/* A handler slower than the interval would starve main(). */
		struct itimerval off = { { 0, 0 }, { 0, 0 } };
		setitimer(ITIMER_REAL, &off, NULL);
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "threads";
	if (strcmp(mode, "threads") == 0) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			pthread_create(&t[i], NULL, churn, NULL);
		for (int i = 0; i < 50; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				sink = malloc(9100);
				free(sink);
				exit(0);
			}
			int status;
			if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
			    WEXITSTATUS(status) != 0)
				return 1;
		}
		stop = 1;
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		printf("forked 50\n");
		return 0;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	/* First mostly inside malloc (the handler interrupts the recorder),
	 * then with time outside it too. */
	while (forks < 50) {
		void *p = malloc(9200);
		free(p);
	}
	while (forks < 100) {
		void *p = malloc(9200);
		free(p);
		for (volatile int spin = 0; spin < 20000; spin++)
			;
	}
	printf("forked from handler\n");
	return 0;
}
