// nbdime's stylesheets, for its notebook diff in the history (viewer.ts)
import 'nbdime/lib/styles/variables.css';
import 'nbdime/lib/styles/common.css';
import 'nbdime/lib/styles/diff.css';
import './base.css';
