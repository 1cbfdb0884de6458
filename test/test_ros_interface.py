"""The nodes' shared ROS plumbing without DDS: the transform cache (asked like tf2_ros.Buffer), stamps,
the topic table and the rate-limited drop log."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rclpy.time import Time

from m2vae_fusion.perception import frames
from m2vae_fusion.ros_interface import stamps, topics
from m2vae_fusion.ros_interface.drop_log import DropLog, Dropped
from m2vae_fusion.ros_interface.transforms import (
    ExtrapolationException,
    LookupException,
    TransformBuffer,
    TransformException,
)

S = 1_000_000_000


def stamped(parent: str, child: str, x: float, t_s: float = 0.0, yaw: float = 0.0) -> TransformStamped:
    msg = TransformStamped(child_frame_id=child)
    msg.header.frame_id = parent
    msg.header.stamp = stamps.from_seconds(t_s)
    msg.transform.translation.x = x
    msg.transform.rotation.z, msg.transform.rotation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return msg


def at(t_s: float) -> Time:
    return Time(nanoseconds=round(t_s * S))


def x_of(buffer: TransformBuffer, target: str, source: str, time: Time) -> float:
    return buffer.lookup_transform(target, source, time).transform.translation.x


# ---------------------------------------------------------------- transforms


def test_lookup_takes_the_newest_sample_at_or_before_the_time():
    buffer = TransformBuffer(cache_time_s=1.0)
    for t_s in (0.3, 0.1, 0.2):  # out of order
        buffer.set_transform(stamped("odom", "base_link", t_s, t_s))
    with pytest.raises(ExtrapolationException, match=r"odom -> base_link .* before 0.050 s"):
        buffer.lookup_transform("odom", "base_link", at(0.05))
    assert x_of(buffer, "odom", "base_link", at(0.25)) == pytest.approx(0.2)
    assert x_of(buffer, "odom", "base_link", at(0.2)) == pytest.approx(0.2)
    assert x_of(buffer, "odom", "base_link", at(9.0)) == pytest.approx(0.3)  # after the newest: the newest
    assert x_of(buffer, "odom", "base_link", Time()) == pytest.approx(0.3)  # zero: the newest, as in tf2
    assert buffer.newest_ns("odom", "base_link") == round(0.3 * S)
    reply = buffer.lookup_transform("/odom", "base_link", at(0.1))  # a leading '/' is ignored, as tf2 does
    assert (reply.header.frame_id, reply.child_frame_id) == ("odom", "base_link")


def test_samples_older_than_the_cache_time_go_and_a_jump_back_starts_over():
    buffer = TransformBuffer(cache_time_s=1.0)
    for t_s in (0.0, 0.2):
        assert not buffer.set_transform(stamped("odom", "base_link", t_s, t_s))
    buffer.set_transform(stamped("odom", "base_link", 1.15, 1.15))
    with pytest.raises(ExtrapolationException):  # 0.0 is more than 1 s before 1.15: gone
        buffer.lookup_transform("odom", "base_link", at(0.1))
    assert x_of(buffer, "odom", "base_link", at(0.5)) == pytest.approx(0.2)
    assert buffer.set_transform(stamped("odom", "base_link", 0.05, 0.05))  # a restarted simulation
    assert x_of(buffer, "odom", "base_link", at(0.5)) == pytest.approx(0.05)
    assert buffer.newest_ns("odom", "base_link") == round(0.05 * S)


def test_clamp_to_oldest_answers_a_time_before_the_history():
    buffer = TransformBuffer(clamp_to_oldest=True)
    for t_s, x in ((1.0, 0.1), (2.0, 0.2), (3.0, 0.3)):
        buffer.set_transform(stamped("map", "robot1/odom", x, t_s))
    got = {t_s: x_of(buffer, "map", "robot1/odom", at(t_s)) for t_s in (0.5, 1.0, 2.5, 9.0)}
    assert got == pytest.approx({0.5: 0.1, 1.0: 0.1, 2.5: 0.2, 9.0: 0.3})
    assert buffer.children("map") == ["robot1/odom"] and buffer.children("robot1/odom") == []


def test_static_transforms_chain_through_the_tree_at_any_time():
    buffer = TransformBuffer()
    assert not buffer.has_static
    buffer.set_transform_static(stamped("base_link", "mast", 0.1, yaw=math.pi / 2))
    buffer.set_transform_static(stamped("mast", "camera", 0.05))
    assert buffer.has_static
    matrix = buffer.lookup_matrix("base_link", "camera", at(123.0))
    np.testing.assert_allclose(frames.apply(matrix, (0.0, 0.0, 0.0)), (0.1, 0.05, 0.0), atol=1e-12)
    np.testing.assert_allclose(buffer.lookup_matrix("mast", "mast", Time()), np.eye(4))
    buffer.set_transform_static(stamped("base_link", "mast", 0.2))  # a later one for the same child replaces it
    np.testing.assert_allclose(
        frames.apply(buffer.lookup_matrix("base_link", "camera", Time()), (0.0, 0.0, 0.0)), (0.25, 0.0, 0.0), atol=1e-12
    )


def test_children_of_a_frame_come_from_tf_and_tf_static():
    """A fixed map -> odom (the Gazebo launch's static transform publisher) is a child of map like a
    time-stamped one: the fusion node's map frame needs either."""
    buffer = TransformBuffer()
    buffer.set_transform_static(stamped("map", "robot2/odom", 0.4))
    buffer.set_transform(stamped("map", "robot1/odom", 0.1, 1.0))
    buffer.set_transform_static(stamped("map", "robot1/odom", 0.7))  # a /tf edge to the same frame wins
    assert buffer.children("map") == ["robot1/odom", "robot2/odom"]
    assert x_of(buffer, "map", "robot2/odom", at(5.0)) == pytest.approx(0.4)
    assert x_of(buffer, "map", "robot1/odom", at(5.0)) == pytest.approx(0.1)


def test_errors_name_the_frames():
    buffer = TransformBuffer()
    buffer.set_transform_static(stamped("base_link", "lidar_link", 0.1))
    with pytest.raises(LookupException, match="'base_link' to 'camera_link'"):
        buffer.lookup_transform("base_link", "camera_link", Time())
    assert not buffer.can_transform("base_link", "camera_link", Time()) and buffer.can_transform(
        "base_link", "lidar_link", Time()
    )
    bad = stamped("odom", "base_link", 0.0, 1.0)
    bad.transform.rotation.w = 0.0  # no rotation at all: refused, not stored
    with pytest.raises(ValueError, match="odom -> base_link: quaternion"):
        buffer.set_transform(bad)
    with pytest.raises(TransformException):
        buffer.lookup_transform("odom", "base_link", Time())
    broken = stamped("base_link", "lidar_link", 0.1)
    broken.transform.rotation.w = math.nan  # the latest word on lidar_link: lookups through it fail
    buffer.set_transform_static(broken)
    with pytest.raises(LookupException, match="'base_link' to 'lidar_link'"):
        buffer.lookup_transform("base_link", "lidar_link", Time())


# ---------------------------------------------------------------- stamps, topics, drop log


def test_stamps_round_trip_in_nanoseconds():
    assert stamps.to_ns(stamps.from_ns(12_345_678_901)) == 12_345_678_901
    t = stamps.from_seconds(1.9999999999)  # a sum of physics steps just below a whole second
    assert (t.sec, t.nanosec) == (2, 0)
    with pytest.raises(ValueError, match=">= 0 ns, got -1"):
        stamps.from_ns(-1)


def test_topic_table_names_each_topic_once_with_compatible_qos():
    names = [t.name for t in topics.TOPICS]
    assert len(names) == len(set(names))
    for topic in topics.TOPICS:
        offered, asked = topic.publisher_qos, topic.qos
        # a reliable subscriber gets nothing from a best-effort publisher, a transient-local one nothing from a volatile one
        assert not (asked.reliability == ReliabilityPolicy.RELIABLE and offered.reliability != ReliabilityPolicy.RELIABLE), (
            topic.name
        )
        assert not (
            asked.durability == DurabilityPolicy.TRANSIENT_LOCAL and offered.durability != DurabilityPolicy.TRANSIENT_LOCAL
        ), topic.name
    assert topics.TF_STATIC.publisher_qos.depth == 1 and topics.TF_STATIC.qos.depth == 100


def test_drop_log_throttles_each_kind_of_message_on_its_own():
    now = [0.0]
    warnings, infos = [], []
    log = DropLog(warnings.append, infos.append, period_s=5.0, clock=lambda: now[0])
    for _ in range(3):
        log.report(Dropped("scan", "empty scan (no ranges)"))
    log.report(Dropped("image", "encoding 'yuv422' is not supported"))
    log.report(Dropped("transform", "no chain", waiting=True))
    assert warnings == ["dropped scan: empty scan (no ranges)", "dropped image: encoding 'yuv422' is not supported"]
    assert infos == ["dropped transform: no chain"]
    now[0] = 5.0
    log.report(Dropped("scan", "1 of 360 ranges are NaN (invalid measurements)"))
    assert warnings[-1] == "dropped scan: 1 of 360 ranges are NaN (invalid measurements) (and 2 more since the last report)"
    log.report(Dropped("encoding", "features contain NaN or inf", kind="malformed", subject="a 'lidar' encoding (stamp 6.100 s)"))
    assert warnings[-1] == "dropped a 'lidar' encoding (stamp 6.100 s): features contain NaN or inf"
    assert log.total == 7
    assert log.counters.counts == {
        "dropped scan: unusable": 4,
        "dropped image: unusable": 1,
        "dropped transform: unusable": 1,
        "dropped encoding: malformed": 1,
    }
