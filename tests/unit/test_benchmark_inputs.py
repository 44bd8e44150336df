"""The benchmarks' synthetic inputs are what the handlers accept (so `make bench` measures real work)."""

from batchgen.handlers.sqs_records import UploadRecord
from benchmarks.uploads import big_png, sqs_event
from local.emulators.cloudinary import sniff_image


def test_benchmark_upload_events_parse_as_upload_records():
    body = {"batchId": "b", "userId": "u", "batchType": "food", "itemId": "i", "index": 0, "stagingKey": "k"}
    for record in sqs_event([body, body])["Records"]:
        parsed = UploadRecord.model_validate(record)
        assert parsed.body.stagingKey == "k"


def test_benchmark_images_are_valid_pngs_of_the_requested_size():
    image = big_png(4096, seed=1)
    assert sniff_image(image) == ("png", 64, 64)
    assert len(image) > 4096
