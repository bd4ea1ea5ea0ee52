/* A tiny HTTP server for a FreeBSD single-application VM: every connection
 * to port 8080 gets one plain-text answer. Only libc and sockets, so it
 * builds with nothing but FreeBSD's base as the sysroot. */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char reply[] =
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from FreeBSD\r\n";

int main(void) {
  struct sockaddr_in addr;
  int one = 1;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) {
    perror("socket");
    return 1;
  }
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&addr, 0, sizeof addr);
  addr.sin_len = sizeof addr;
  addr.sin_family = AF_INET;
  addr.sin_port = htons(8080);
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 16) < 0) {
    perror("bind");
    return 1;
  }
  printf("hello: listening on :8080\n");
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0)
      continue;
    write(c, reply, strlen(reply));
    close(c);
  }
}
