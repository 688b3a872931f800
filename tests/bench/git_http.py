#!/usr/bin/env python3
# git_http.py (bench): git's smart HTTP for the repositories under ROOT, on
# 127.0.0.1:PORT: Python's HTTP server (one request at a time: a fork from a
# threaded Python can hang on a lock another thread held) running git-http-backend as a
# CGI (a fork and exec per request, as Apache or lighttpd would), so that a
# benchmark needs no web server package. http://127.0.0.1:PORT/NAME.git
#
#   git_http.py ROOT PORT
import functools
import http.server
import os
import subprocess
import sys


def backend():
    path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True)
    return os.path.join(path.stdout.strip(), "git-http-backend")


class Handler(http.server.CGIHTTPRequestHandler):
    # every path is the backend's: /NAME.git/info/refs -> PATH_INFO
    def is_cgi(self):
        self.cgi_info = ("/cgi", "git-http-backend" + self.path)
        return True

    def log_message(self, *args):
        pass


def main():
    root, port = sys.argv[1], int(sys.argv[2])
    cgi = os.path.join(root, "cgi")
    os.makedirs(cgi, exist_ok=True)
    link = os.path.join(cgi, "git-http-backend")
    if not os.path.lexists(link):
        os.symlink(backend(), link)
    os.environ["GIT_PROJECT_ROOT"] = root
    os.environ["GIT_HTTP_EXPORT_ALL"] = "1"
    # the CGI runs as this user, not as nobody (who may not enter ROOT)
    http.server.nobody_uid = os.getuid
    handler = functools.partial(Handler, directory=root)
    http.server.HTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
