/* proto.h (report): the status socket protocol that kilnd (control.c) and
 * kiln (kiln.c) speak, spelled once. A unix stream socket; one JSON object per
 * line each way. A request is {"v":PROTO_VERSION,"cmd":NAME,...arguments};
 * the answer {"v":..,"ok":true,"result":..} or {"v":..,"ok":false,"error":".."}.
 * A request without "v" is taken as this version; another version is refused.
 * README.md ("The status socket protocol") describes each command. */
#ifndef KILN_PROTO_H
#define KILN_PROTO_H

#define PROTO_VERSION	     1
#define PROTO_LINE_MAX	     (64u << 10) /* a request line, newline excluded */
#define PROTO_ANSWER_MAX     (64u << 20) /* what kiln accepts as one answer line */
#define PROTO_LOG_MAX	     (8u << 20)	 /* the tail of a longer build log is sent */
#define PROTO_SOCKET_DEFAULT "/run/kiln/kiln.sock"

/* commands */
#define PROTO_CMD_STATUS  "status"
#define PROTO_CMD_HEALTH  "health"
#define PROTO_CMD_BUILDS  "builds"
#define PROTO_CMD_BUILD	  "build" /* one build by id: `kiln show ID` */
#define PROTO_CMD_LOGS	  "logs"
#define PROTO_CMD_TRIGGER "trigger"
#define PROTO_CMD_REBUILD "rebuild"
#define PROTO_CMD_CANCEL  "cancel"

/* framing */
#define PROTO_F_VERSION "v"
#define PROTO_F_CMD	"cmd"
#define PROTO_F_OK	"ok"
#define PROTO_F_RESULT	"result"
#define PROTO_F_ERROR	"error"

/* request arguments (some are also result fields) */
#define PROTO_F_ID	   "id"
#define PROTO_F_REPOSITORY "repository"
#define PROTO_F_BRANCH	   "branch"
#define PROTO_F_IMAGE	   "image" /* a request's image folder; a result's image reference */
#define PROTO_F_COMMIT	   "commit"
#define PROTO_F_SUBJECT	   "subject" /* the commit's summary, or null */
#define PROTO_F_STATE	   "state"
#define PROTO_F_LIMIT	   "limit"
#define PROTO_LIMIT_MAX	   100000 /* rows a "builds" answer may ask for */
#define PROTO_F_FOLLOW	   "follow"

/* a build (builds, build) */
#define PROTO_F_PATH	    "path"
#define PROTO_F_CHANGE	    "change"
#define PROTO_F_ATTEMPTS    "attempts"
#define PROTO_F_DIGEST	    "digest"
#define PROTO_F_BUILDER	    "builder" /* classic, buildkit, or null */
#define PROTO_F_QUEUED_AT   "queued_at"
#define PROTO_F_STARTED_AT  "started_at"
#define PROTO_F_FINISHED_AT "finished_at"

/* other results */
#define PROTO_F_LOG	  "log"	      /* logs */
#define PROTO_F_TRIGGERED "triggered" /* trigger: the repository */
#define PROTO_F_HEALTHY	  "healthy"   /* health */
#define PROTO_F_REASON	  "reason"    /* health, when not healthy: the first reason's text */
#define PROTO_F_REASONS	  "reasons"   /* health: each reason (also GET /healthz) */

/* a health reason: what, name (or null), message, since (unix seconds or null) */
#define PROTO_F_WHAT	"what"
#define PROTO_F_MESSAGE "message"
#define PROTO_F_SINCE	"since"

/* status (filled by kilnd.c's control_ops.status) */
#define PROTO_F_SRV_VERSION  "version"
#define PROTO_F_UPTIME	     "uptime_s"
#define PROTO_F_REPOSITORIES "repositories"
#define PROTO_F_QUEUED	     "queued"
#define PROTO_F_RUNNING	     "running"
#define PROTO_F_ENGINE	     "engine" /* status: {host, engine, state} */
#define PROTO_F_HOST	     "host"
#define PROTO_F_NAME	     "name"
#define PROTO_F_BRANCHES     "branches"
#define PROTO_F_HEAD	     "head"
#define PROTO_F_LAST_SEEN    "last_seen"
#define PROTO_F_LAST_ERROR   "last_error"
/* a repository's commit statuses and notifications not yet delivered, and
 * the last refusal of its forge or notification target (null: none) */
#define PROTO_F_OUTBOX		"outbox"
#define PROTO_F_REPORTING_ERROR "reporting_error"

/* build states as the store names them and `kiln logs -f` waits on */
#define PROTO_STATE_QUEUED     "queued"
#define PROTO_STATE_RUNNING    "running"
#define PROTO_STATE_CANCELLED  "cancelled"
#define PROTO_STATE_CANCELLING "cancelling" /* a running build being stopped */

#endif
