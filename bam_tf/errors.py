"""The errors that mean bad input, not a bug: scripts print their message
(which names the file, line or flag) without a stack trace."""

from bam_tf.callbacks import NonFiniteLossError
from bam_tf.config import ConfigError
from bam_tf.data.examples import DataError
from bam_tf.data.features import FeatureCacheError
from bam_tf.encoders import EncoderError
from bam_tf.families import FamilyError
from bam_tf.outputs import OutputFileError
from bam_tf.run import RunError
from bam_tf.tasks import UnknownTaskError
from bam_tf.teachers import TeacherError

USER_ERRORS = (ConfigError, DataError, FeatureCacheError, EncoderError,
               FamilyError, OutputFileError, RunError, UnknownTaskError,
               TeacherError, NonFiniteLossError)
