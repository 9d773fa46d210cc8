"""Configuration of the Android device backends (adb and Appium)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from guiagent.config import StrictModel


class AndroidInputConfig(StrictModel):
    """Settings both Android backends (adb and Appium) share: apps, gestures, snapshots."""

    adb_path: str = Field("adb", description="The adb executable used to start/stop the server and run 'adb emu'.")
    adb_server_port: int = Field(
        5037, ge=1, le=65535,
        description="Port of this worker's own adb server (one server per worker: shared servers get lost under load).")
    app_packages: dict[str, str] = Field(
        default_factory=dict,
        description="App name -> 'package' or 'package/activity' for OPEN_APP; names match case-insensitively.")
    snapshot_name: str | None = Field(None, description="Emulator snapshot loaded by reset(); None skips the snapshot load.")
    snapshot_timeout: float = Field(60.0, gt=0, description="Seconds a snapshot load may take.")
    long_press_ms: int = Field(1000, ge=1, description="Press time of a long press when the action gives none.")
    swipe_ms: int = Field(300, ge=1, description="Duration of a swipe/scroll when the action gives none.")


class AndroidEnvConfig(AndroidInputConfig):
    """One Android device driven over adb (an emulator, a phone, or MobileSim's virtual adbd)."""

    serial: str = Field(..., description="adb serial: 'emulator-5554' for a local emulator, 'HOST:PORT' for a TCP device.")
    start_adb_server: bool = Field(True, description="Start the adb server on adb_server_port if it is not running.")
    kill_adb_server_on_close: bool = Field(False, description="Kill the adb server on close() (when it is this worker's own).")
    connect_tcp: bool = Field(True, description="Run 'adb connect SERIAL' when the serial is HOST:PORT (and again to reconnect).")
    timeout: float = Field(10.0, gt=0, description="Seconds every single device call may take before DeviceTimeout.")
    ready_timeout: float = Field(60.0, gt=0, description="Seconds wait_ready() waits for boot + launcher + non-blank screen.")
    max_retries: int = Field(1, ge=0, description="Extra attempts for idempotent reads (screenshot, UI dump) after a timeout.")
    max_reconnects: int = Field(2, ge=0, description="Reconnect attempts ('adb connect') after the device went away, per call.")
    launcher_package: str = Field(
        "com.google.android.apps.nexuslauncher",
        description="Package whose focus means 'on the home screen' (MobileSim: com.guiagent.launcher).")
    input_method: str = Field(
        "com.android.adbkeyboard/.AdbIME",
        description="Input method that types non-ASCII text via 'am broadcast -a ADB_INPUT_B64' when installed.")
    reset_method: Literal["adb_emu", "grpc", "none"] = Field(
        "adb_emu",
        description="How reset() restores snapshot_name: 'adb emu avd snapshot load', the gRPC SnapshotService, or not at all.")
    grpc_endpoint: str | None = Field(
        None, description="Emulator gRPC endpoint 'host:port' (emulator -grpc 8554): fast screenshots and snapshot loads.")
    grpc_image_format: Literal["png", "rgb888"] = Field(
        "png", description="Image format requested from the gRPC getScreenshot (rgb888 is re-encoded to PNG here).")
    observe_a11y: bool = Field(False, description="Attach the uiautomator XML to every observation (costs a dump per step).")
    settle_s: float = Field(0.0, ge=0, description="Seconds to sleep after each action so animations finish.")


class AppiumEnvConfig(AndroidInputConfig):
    """One Android device driven through an Appium server with the UiAutomator2 driver.

    Farm notes: every device behind one Appium server needs its own ``system_port`` (the UiAutomator2
    server's port forward) and ``mjpeg_server_port``, or sessions steal each other's forwards.
    """

    server_url: str = Field("http://127.0.0.1:4723", description="Appium server URL.")
    udid: str = Field(..., description="adb serial of the device (Appium's udid capability).")
    system_port: int = Field(..., ge=1024, le=65535, description="UiAutomator2 server port, unique per device (8200-8299).")
    mjpeg_server_port: int = Field(..., ge=1024, le=65535, description="MJPEG screenshot stream port, unique per device.")
    wait_for_idle_timeout_ms: int = Field(
        100, ge=0, description="How long UiAutomator2 waits for the UI to idle before each command (driver default 10 s).")
    new_command_timeout_s: int = Field(300, ge=1, description="Appium ends a session idle for this long.")
    adb_exec_timeout_ms: int = Field(20000, ge=1000, description="Timeout of the adb commands Appium runs.")
    server_launch_timeout_ms: int = Field(60000, ge=1000, description="Timeout for the UiAutomator2 server to start.")
    timeout: float = Field(30.0, gt=0, description="HTTP timeout of every command sent to the Appium server.")
