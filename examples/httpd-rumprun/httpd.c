/* A small HTTP/1.0 file server for a rumprun unikernel: serves the files
 * under a document root (argv[2], default /data/www: the block image bunny
 * makes from the BunnyFile's rootfs.include) on a port (argv[1], default 80).
 * GET /env answers with the guest's GREETING variable, so a test can see
 * the environment arrive; GET /append/WORD adds a line to ROOT/log (on a
 * volume, `bunny run -v DIR:/data`, it outlives the guest). One process, one connection at a time: a rump
 * kernel runs no other process. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void put(int c, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(c, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void reply(int c, const char *status, const char *type, const char *body) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, type, strlen(body));
    put(c, head, (size_t)n);
    put(c, body, strlen(body));
}

static const char *type_of(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && strcmp(dot, ".html") == 0) return "text/html";
    if (dot && strcmp(dot, ".css") == 0) return "text/css";
    return "text/plain";
}

static void serve(int c, const char *root) {
    char req[2048], path[1024], file[1400], buf[8192];
    size_t got = 0;
    ssize_t n;
    /* A request may come in several segments: read to the blank line. */
    req[0] = '\0';
    while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n") && !strstr(req, "\n\n")) {
        n = read(c, req + got, sizeof req - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
        req[got] = '\0';
    }
    if (got == 0) return;
    if (sscanf(req, "GET %1023s", path) != 1) {
        reply(c, "405 Method Not Allowed", "text/plain", "only GET\n");
        return;
    }
    if (strcmp(path, "/env") == 0) {
        const char *g = getenv("GREETING");
        snprintf(buf, sizeof buf, "GREETING=%s\n", g ? g : "(unset)");
        reply(c, "200 OK", "text/plain", buf);
        return;
    }
    if (strncmp(path, "/append/", 8) == 0 && !strchr(path + 8, '/')) {
        snprintf(file, sizeof file, "%s/log", root);
        int fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644);
        snprintf(buf, sizeof buf, "%s\n", path + 8);
        if (fd < 0 || write(fd, buf, strlen(buf)) < 0 || fsync(fd) < 0) {
            snprintf(buf, sizeof buf, "%s: %s\n", file, strerror(errno));
            if (fd >= 0) close(fd);
            reply(c, "500 Internal Server Error", "text/plain", buf);
            return;
        }
        close(fd);
        reply(c, "200 OK", "text/plain", "appended\n");
        return;
    }
    if (strstr(path, "..")) {
        reply(c, "403 Forbidden", "text/plain", "no ..\n");
        return;
    }
    snprintf(file, sizeof file, "%s%s%s", root, path,
             path[strlen(path) - 1] == '/' ? "index.html" : "");
    int fd = open(file, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        reply(c, "404 Not Found", "text/plain", "not found\n");
        return;
    }
    int h = snprintf(buf, sizeof buf,
                     "HTTP/1.0 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n"
                     "Connection: close\r\n\r\n",
                     type_of(file), (long long)st.st_size);
    put(c, buf, (size_t)h);
    while ((n = read(fd, buf, sizeof buf)) > 0) put(c, buf, (size_t)n);
    close(fd);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 80;
    const char *root = argc > 2 ? argv[2] : "/data/www";
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in addr;

    if (s < 0) { perror("socket"); return 1; }
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }
    if (listen(s, 16) < 0) { perror("listen"); return 1; }
    printf("httpd: serving %s on port %d\n", root, port);
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno != EINTR) perror("accept");
            continue;
        }
        serve(c, root);
        close(c);
    }
}
