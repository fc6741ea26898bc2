/* A bounded load of plain HTTP/1.1 GETs at a fixed rate, for bench/hosts.lua.
 *   hosts_load PORT PATH RATE SECONDS open|keepalive CONNS
 * open: one new connection per request ("Connection: close"), sent at its
 * scheduled time whatever happened to the others (open loop).
 * keepalive: CONNS persistent connections; request i goes on connection
 * i % CONNS at its scheduled time, or as soon as that connection is free.
 * Latency counts from the scheduled time (no coordinated omission).
 * Prints one line per request: scheduled time (CLOCK_MONOTONIC seconds, the
 * clock of keyfactor.core.now), latency in ms, HTTP status (0: no answer
 * within 10 s after the last scheduled request).  127.0.0.1 only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct req { double sched, done; int status; };
struct conn { int fd; long req; size_t len; char buf[8192]; };

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int port;
static char request_close[512], request_keep[512];

static int open_conn(int blocking)
{
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0) return -1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!blocking) fcntl(fd, F_SETFL, O_NONBLOCK);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) { close(fd); return -1; }
  if (blocking) fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

/* A complete answer in buf: its status, else 0 (need more). eof: the peer closed. */
static int complete(struct conn *c, int eof)
{
  char *end, *cl;
  int status = 0;
  c->buf[c->len < sizeof c->buf ? c->len : sizeof c->buf - 1] = '\0';
  if (sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1) return eof ? -1 : 0;
  end = strstr(c->buf, "\r\n\r\n");
  if (!end) return eof ? -1 : 0;
  cl = strcasestr(c->buf, "\r\ncontent-length:");
  if (cl && cl < end) {
    size_t want = (size_t)(end + 4 - c->buf) + (size_t)strtoul(cl + 17, NULL, 10);
    return c->len >= want ? status : (eof ? -1 : 0);
  }
  return eof ? status : 0;
}

int main(int argc, char **argv)
{
  double rate, seconds, t0, deadline;
  long n, next = 0, finished = 0, i;
  int keepalive, nconns, ep;
  struct req *reqs;
  struct conn *conns;
  struct epoll_event ev, evs[256];
  if (argc < 7) { fprintf(stderr, "usage: hosts_load PORT PATH RATE SECONDS open|keepalive CONNS\n"); return 2; }
  port = atoi(argv[1]);
  rate = atof(argv[3]);
  seconds = atof(argv[4]);
  keepalive = strcmp(argv[5], "keepalive") == 0;
  nconns = keepalive ? atoi(argv[6]) : (int)(rate * seconds);
  n = (long)(rate * seconds);
  if (n <= 0 || nconns <= 0) return 2;
  snprintf(request_close, sizeof request_close, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", argv[2]);
  snprintf(request_keep, sizeof request_keep, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", argv[2]);
  reqs = calloc((size_t)n, sizeof *reqs);
  conns = calloc((size_t)nconns, sizeof *conns);
  ep = epoll_create1(0);
  if (!reqs || !conns || ep < 0) return 1;
  for (i = 0; i < nconns; i++) {
    conns[i].fd = -1;
    conns[i].req = -1;
    if (keepalive) {
      conns[i].fd = open_conn(1);
      if (conns[i].fd < 0) { perror("connect"); return 1; }
      ev.events = EPOLLIN;
      ev.data.u64 = (unsigned long)i;
      epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
    }
  }
  t0 = now_s() + 0.05;
  for (i = 0; i < n; i++) reqs[i].sched = t0 + (double)i / rate;
  deadline = t0 + seconds + 10;
  while (finished < n && now_s() < deadline) {
    double t = now_s();
    int k, got, timeout;
    /* Send what is due: open loop, new connections; keep-alive, on a free connection. */
    for (; next < n && reqs[next].sched <= t; next++) {
      if (!keepalive) {
        struct conn *c = &conns[next];
        c->fd = open_conn(0);
        c->req = next;
        c->len = 0;
        if (c->fd < 0) { reqs[next].done = t; finished++; continue; }
        ev.events = EPOLLOUT;
        ev.data.u64 = (unsigned long)next;
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
      }
    }
    if (keepalive) {
      for (k = 0; k < nconns; k++) {
        struct conn *c = &conns[k];
        long r = c->req < 0 ? k : c->req;      /* the next request of connection k */
        if (c->req >= 0 && reqs[c->req].done == 0) continue;   /* busy */
        if (c->req >= 0) r = c->req + nconns;
        if (r < n && reqs[r].sched <= t) {
          c->req = r;
          c->len = 0;
          if (write(c->fd, request_keep, strlen(request_keep)) < 0) { reqs[r].done = t; finished++; }
        }
      }
    }
    timeout = next < n ? (int)((reqs[next].sched - now_s()) * 1000) : 100;
    if (timeout < 0) timeout = 0;
    if (keepalive && timeout > 1) timeout = 1;
    got = epoll_wait(ep, evs, 256, timeout);
    for (k = 0; k < got; k++) {
      long idx = (long)evs[k].data.u64;
      struct conn *c = &conns[idx];
      ssize_t r;
      int status, eof = 0;
      if (!keepalive && (evs[k].events & EPOLLOUT)) {
        if (write(c->fd, request_close, strlen(request_close)) < 0) eof = 1;
        ev.events = EPOLLIN;
        ev.data.u64 = (unsigned long)idx;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        if (!eof) continue;
      }
      if (c->req < 0 || reqs[c->req].done != 0) {   /* keep-alive: nothing asked */
        char sink[512];
        if (read(c->fd, sink, sizeof sink) <= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); }
        continue;
      }
      r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
      if (r > 0) c->len += (size_t)r;
      else if (r == 0 || errno != EAGAIN) eof = 1;
      status = complete(c, eof);
      if (status != 0) {
        reqs[c->req].done = now_s();
        reqs[c->req].status = status > 0 ? status : 0;
        finished++;
        if (!keepalive) {
          epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
          close(c->fd);
          c->fd = -1;
        } else if (eof) {
          fprintf(stderr, "hosts_load: keep-alive connection closed by the host\n");
          return 1;
        }
      }
    }
  }
  for (i = 0; i < n; i++) {
    double latency = reqs[i].done > 0 ? (reqs[i].done - reqs[i].sched) * 1000 : -1;
    printf("%.6f %.3f %d\n", reqs[i].sched, latency, reqs[i].status);
  }
  return 0;
}
