"""Every in-memory stand-in for the ports of `batchgen.usecases.ports`, in one place."""

from tests.fakes.aws import FakeBlobs, FakeNotifier, FakeQueues
from tests.fakes.cdn import FakeCdn, Uploaded
from tests.fakes.gemini import FakeGemini, FakeJob
from tests.fakes.notifications import FakeMailer, FakeNotifications, FakePoster, Posted
from tests.fakes.services import FakeServices, NotifyFakes, OnDynamo
from tests.fakes.store import FakeStore

__all__ = [
    "FakeBlobs",
    "FakeCdn",
    "FakeGemini",
    "FakeJob",
    "FakeMailer",
    "FakeNotifications",
    "FakeNotifier",
    "FakePoster",
    "FakeQueues",
    "FakeServices",
    "FakeStore",
    "NotifyFakes",
    "OnDynamo",
    "Posted",
    "Uploaded",
]
