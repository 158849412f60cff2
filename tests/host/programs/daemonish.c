/* Closes every descriptor, as daemons do, then opens a file of its own
 * (which may get the recorder's old descriptor number) and allocates enough
 * to make the recorder claim many chunks. The file must come out intact. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void *volatile sink;

int main(int argc, char **argv)
{
	if (argc < 2)
		return 1;
	for (int fd = 3; fd < 1024; fd++)
		close(fd);
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "hello\n", 6) != 6)
		return 2;
	for (int i = 0; i < 50000; i++) {
		sink = malloc(9009);
		free(sink);
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size != 6)
		return 3;
	if (fork() == 0) /* the child's trace setup must not close the program's file */
		_exit(0);
	if (write(fd, "world\n", 6) != 6)
		return 4;
	close(fd);
	printf("fd %d\n", fd);
	return 0;
}
