"""A fake Kubernetes API server for the operator's integration tests: kmock 0.8 plus a shim.

kmock (pinned: this uses its KubernetesScaffold and request parsing) provides the aiohttp server,
URL parsing into resource/namespace/name/subresource, and discovery. Its own object store treats
every write as a dict merge and sets no server metadata, which kube-rs' watcher and Controller
cannot run on, so this shim keeps the objects itself with the semantics the operator relies on:

- server-set metadata: namespace from the URL, uid, increasing resourceVersion, generation
  bumped on spec changes and on deletion marking, creationTimestamp;
- create (POST), get, list (label and field selectors), watch (replay from a resourceVersion,
  then live), replace (PUT), merge / strategic-merge / JSON patches, server-side apply
  (including create-on-missing; single-manager approximation: applied top-level fields and
  labels/annotations/ownerReferences replace the stored ones);
- status subresource separation: writes to the object keep its status, writes to /status only
  change the status;
- no-op writes change nothing (no resourceVersion bump, no watch event), like a real apiserver,
  so a controller that re-applies unchanged objects settles instead of looping;
- finalizers and deletionTimestamp, and background garbage collection of owned objects.

Not emulated: schema validation, defaulting, CEL admission, SSA field ownership and conflicts,
RBAC, and controllers (nothing ever becomes ready unless a test patches the status).

Run: python kmock_shim.py [--port N]; prints "READY <port>" on stdout once listening.
"""

import argparse
import asyncio
import copy
import datetime
import json
import signal
import sys
import uuid

import aiohttp.web
import jsonpatch
import jsonpointer
import kmock

KINDS = {
    "streams": "Stream",
    "deployments": "Deployment",
    "services": "Service",
    "secrets": "Secret",
    "configmaps": "ConfigMap",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "ingresses": "Ingress",
    "events": "Event",
    "leases": "Lease",
    "pods": "Pod",
}


def now():
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (also used for strategic merge patches)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def spec_part(obj):
    """Everything a generation bump reacts to: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Selector:
    """Equality-based label selectors and metadata field selectors."""

    def __init__(self, labels, fields):
        self.labels = [term.strip() for term in (labels or "").split(",") if term.strip()]
        self.fields = [term.strip() for term in (fields or "").split(",") if term.strip()]

    def matches(self, obj):
        meta = obj.get("metadata", {})
        labels = meta.get("labels") or {}
        for term in self.labels:
            if "!=" in term:
                key, value = term.split("!=", 1)
                if labels.get(key) == value:
                    return False
            elif "==" in term or "=" in term:
                key, value = term.replace("==", "=").split("=", 1)
                if labels.get(key) != value:
                    return False
            elif term.startswith("!"):
                if term[1:] in labels:
                    return False
            elif term not in labels:
                return False
        for term in self.fields:
            key, value = term.replace("==", "=").split("=", 1)
            field = key.split(".", 1)[-1]
            if str(meta.get(field)) != value:
                return False
        return True


class Store:
    def __init__(self):
        self.objects = {}  # (group, plural) -> {(namespace, name): object}
        self.log = {}  # (group, plural) -> [(rv, event)]
        self.watchers = {}  # (group, plural) -> set of queues
        self.rv = 0

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def emit(self, key, kind, obj):
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self.log.setdefault(key, []).append((int(obj["metadata"]["resourceVersion"]), event))
        for queue in self.watchers.get(key, set()):
            queue.put_nowait(event)


def error(code, reason, message):
    return aiohttp.web.json_response(
        {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
         "reason": reason, "message": message, "code": code},
        status=code,
    )


class Shim(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold (discovery, errors) with a stateful object store."""

    store: Store = None

    async def _handle(self, request):
        resource = request.resource
        if resource is None or not resource.plural:
            return await super()._handle(request)
        try:
            response = await self.serve(request)
        except jsonpatch.JsonPatchException as e:
            response = error(422, "Invalid", f"patch failed: {e}")
        log(str(request.method.value), request.url.path_qs, response.status)
        return response

    async def serve(self, request):
        res = request.resource
        key = (res.group, res.plural)
        method = str(request.method.value).upper()
        params = request.params
        ns, name, sub = request.namespace, request.name, request.subresource
        objects = self.store.objects.setdefault(key, {})

        if method == "GET" and params.get("watch") in ("true", "1"):
            return await self.watch(request, key, ns, name)
        if method == "GET" and name is None:
            selector = Selector(params.get("labelSelector"), params.get("fieldSelector"))
            items = [copy.deepcopy(o) for (o_ns, _), o in sorted(objects.items())
                     if (ns is None or o_ns == ns) and selector.matches(o)]
            return aiohttp.web.json_response({
                "apiVersion": self.api_version(res), "kind": self.kind(res) + "List",
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": items,
            })
        if method == "GET":
            obj = objects.get((ns, name))
            if obj is None:
                return error(404, "NotFound", f'{res.plural} "{name}" not found')
            return aiohttp.web.json_response(obj)
        if method == "POST":
            body = request.data or {}
            body_name = body.get("metadata", {}).get("name")
            if not body_name and body.get("metadata", {}).get("generateName"):
                body_name = body["metadata"]["generateName"] + uuid.uuid4().hex[:5]
                body["metadata"]["name"] = body_name
            if (ns, body_name) in objects:
                return error(409, "AlreadyExists", f'{res.plural} "{body_name}" already exists')
            return self.create(request, key, ns, body_name, body, params)
        if method in ("PUT", "PATCH"):
            return self.update(request, key, ns, name, sub, method, params)
        if method == "DELETE":
            if (ns, name) not in objects:
                return error(404, "NotFound", f'{res.plural} "{name}" not found')
            return aiohttp.web.json_response(self.delete(key, ns, name))
        return error(405, "MethodNotAllowed", f"{method} is not supported by the fake")

    def api_version(self, res):
        return f"{res.group}/{res.version}" if res.group else res.version

    def kind(self, res):
        return KINDS.get(res.plural, res.plural[:-1].capitalize())

    def create(self, request, key, ns, name, body, params):
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", self.api_version(request.resource))
        obj.setdefault("kind", self.kind(request.resource))
        obj.pop("status", None)  # status is the controllers' business, also on create
        meta = obj.setdefault("metadata", {})
        meta["name"] = name
        if ns:
            meta["namespace"] = ns
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if params.get("dryRun"):
            meta["resourceVersion"] = str(self.store.rv)
            return aiohttp.web.json_response(obj, status=201)
        meta["resourceVersion"] = self.store.next_rv()
        self.store.objects[key][(ns, name)] = obj
        self.store.emit(key, "ADDED", obj)
        return aiohttp.web.json_response(obj, status=201)

    def update(self, request, key, ns, name, sub, method, params):
        objects = self.store.objects[key]
        old = objects.get((ns, name))
        content_type = request.headers.get("Content-Type", "").split(";")[0]
        body = request.data
        if old is None:
            if method == "PATCH" and content_type == "application/apply-patch+yaml" and sub is None:
                return self.create(request, key, ns, name, body, params)
            return error(404, "NotFound", f'{request.resource.plural} "{name}" not found')

        if method == "PUT":
            stored_rv = old["metadata"]["resourceVersion"]
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != stored_rv:
                return error(409, "Conflict", "the object has been modified")
            candidate = copy.deepcopy(body)
        elif content_type == "application/json-patch+json":
            candidate = self.json_patch(old, body)
        elif content_type == "application/apply-patch+yaml":
            candidate = self.apply(old, body, sub)
        else:  # merge and strategic merge patches
            candidate = merge_patch(old, body)

        new = copy.deepcopy(old)
        if sub == "status":
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            for k in list(new):
                if k not in ("metadata", "status"):
                    del new[k]
            new.update(spec_part(candidate))
            meta = candidate.get("metadata") or {}
            for field in ("labels", "annotations", "ownerReferences", "finalizers"):
                if meta.get(field) is not None:
                    new["metadata"][field] = meta[field]
                else:
                    new["metadata"].pop(field, None)
            if spec_part(new) != spec_part(old):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1

        if new == old:
            return aiohttp.web.json_response(old)  # no-op: no new resourceVersion, no event
        if params.get("dryRun"):
            return aiohttp.web.json_response(new)
        new["metadata"]["resourceVersion"] = self.store.next_rv()
        objects[(ns, name)] = new
        self.store.emit(key, "MODIFIED", new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.remove(key, ns, name)
        return aiohttp.web.json_response(new)

    def json_patch(self, old, ops):
        # Kubernetes' JSON patch treats `test` of a missing path against null as passing
        # (kube-rs' finalizer helper relies on it when adding the first finalizer).
        kept = []
        for op in ops:
            if op.get("op") == "test" and op.get("value") is None:
                if jsonpointer.resolve_pointer(old, op["path"], None) is None:
                    continue
            kept.append(op)
        return jsonpatch.apply_patch(old, kept)

    def apply(self, old, applied, sub):
        # One field manager per object in these tests: the applied fields replace the stored
        # ones (what SSA does for fields that manager owns).
        new = copy.deepcopy(old)
        if sub == "status":
            new["status"] = applied.get("status")
            return new
        for k in list(new):
            if k not in ("metadata", "status", "apiVersion", "kind"):
                del new[k]
        new.update({k: v for k, v in applied.items() if k not in ("metadata", "status")})
        meta = applied.get("metadata") or {}
        for field in ("labels", "annotations", "ownerReferences"):
            if field in meta:
                new["metadata"][field] = meta[field]
        return new

    def delete(self, key, ns, name):
        obj = self.store.objects[key][(ns, name)]
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now()
                meta["generation"] = meta.get("generation", 1) + 1
                meta["resourceVersion"] = self.store.next_rv()
                self.store.emit(key, "MODIFIED", obj)
            return obj
        return self.remove(key, ns, name)

    def remove(self, key, ns, name):
        obj = self.store.objects[key].pop((ns, name))
        obj["metadata"]["resourceVersion"] = self.store.next_rv()
        self.store.emit(key, "DELETED", obj)
        # Background garbage collection: dependents go after their owner.
        uid = obj["metadata"].get("uid")
        for other_key, objects in self.store.objects.items():
            for (o_ns, o_name), other in list(objects.items()):
                owners = other.get("metadata", {}).get("ownerReferences") or []
                if o_ns == ns and any(o.get("uid") == uid for o in owners):
                    self.delete(other_key, o_ns, o_name)
        return obj

    async def watch(self, request, key, ns, name):
        params = request.params
        selector = Selector(params.get("labelSelector"), params.get("fieldSelector"))
        since = params.get("resourceVersion") or "0"
        timeout = float(params.get("timeoutSeconds") or 300)

        def wanted(event):
            meta = event["object"].get("metadata", {})
            return ((ns is None or meta.get("namespace") == ns)
                    and (name is None or meta.get("name") == name)
                    and selector.matches(event["object"]))

        # Snapshot and subscription happen without an await in between: nothing is missed.
        queue = asyncio.Queue()
        self.store.watchers.setdefault(key, set()).add(queue)
        if since == "0":
            backlog = [{"type": "ADDED", "object": copy.deepcopy(o)}
                       for o in self.store.objects.get(key, {}).values()]
        else:
            backlog = [e for rv, e in self.store.log.get(key, []) if rv > int(since)]

        response = aiohttp.web.StreamResponse(
            status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            for event in backlog:
                if wanted(event):
                    await response.write(json.dumps(event).encode() + b"\n")
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if wanted(event):
                    await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.watchers[key].discard(queue)
        return response


async def main(port):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    shim = Shim()
    shim.store = Store()
    async with shim, kmock.Server(shim, port=port) as server:
        print(f"READY {server.port}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(main(parser.parse_args().port))
